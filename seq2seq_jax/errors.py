"""The one exception type that means "the user asked for something wrong".

launch.py turns a UserError into a one-line message and a non-zero exit, with no
traceback; any other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
  """A mistake in the user's config, flags, files or input."""
