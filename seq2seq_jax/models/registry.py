"""Registries of named parts: a config names a part and gives only that part's settings.

A swappable part of a model (a frontend, an RNN cell, an attention, ...) is a class, usually
a Flax module, registered under a short name in the registry of its kind:

  FRONTENDS = Registry('model.frontend')

  @FRONTENDS.register('patches')
  class Patches(nn.Module):
    features: int          # given by the model that builds it
    patch_size: int = 16   # a setting: the config may set it

and chosen in an experiment by a group of settings that names it (ESPnet2's `frontend` +
`frontend_conf`, as one group):

  c.model.frontend = dict(name='patches', patch_size=14)

The model builds it with `FRONTENDS.build(spec, features=..., ...)`: the keyword arguments
are what the model supplies (sizes it owns, dtype, initializer); the spec supplies the rest.
A key the part does not have is one clear error naming the part and its settings, so a model
never declares another part's fields, and adding a part is a new class and one decorator line.
"""
import dataclasses
from typing import Any, Callable, Mapping

from seq2seq_jax.errors import UserError


def spec_dict(spec: Any) -> dict[str, Any]:
  """A part's spec as a plain dict with 'name': from a name alone, a dict or a ConfigDict."""
  if isinstance(spec, str):
    return {'name': spec}
  if hasattr(spec, 'to_dict'):      # ml_collections.ConfigDict
    spec = spec.to_dict()
  if isinstance(spec, Mapping):
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in dict(spec).items()}
  if isinstance(spec, (tuple, list)):     # a frozen spec: ((key, value), ...)
    return dict(spec)
  raise UserError(f'a part is chosen by a name or a group of settings with a name; got {spec!r}')


def freeze(spec: Any) -> tuple[tuple[str, Any], ...]:
  """A hashable form of a spec (Flax module fields and jit caches want hashable values)."""
  return tuple(sorted(spec_dict(spec).items()))


class Registry:
  """Named classes of one kind of part."""

  def __init__(self, kind: str):
    self.kind = kind       # the config key that chooses one, for error messages
    self._classes: dict[str, type] = {}

  def register(self, name: str) -> Callable[[type], type]:
    def add(cls: type) -> type:
      if name in self._classes:
        raise ValueError(f'{self.kind}: {name!r} is registered twice')
      self._classes[name] = cls
      cls.part_name = name
      return cls
    return add

  def names(self) -> tuple[str, ...]:
    return tuple(self._classes)

  def get(self, name: Any) -> type:
    if name not in self._classes:
      raise UserError(f'{self.kind}.name={name!r} is not one of {", ".join(self._classes)}')
    return self._classes[name]

  def settings(self, name: str) -> dict[str, Any]:
    """The settings a config may give part `name`, with their defaults."""
    cls = self.get(name)
    out = {}
    for f in dataclasses.fields(cls):
      if f.name in ('parent', 'name') or not f.init:
        continue
      if f.default is not dataclasses.MISSING:
        out[f.name] = f.default
      elif f.default_factory is not dataclasses.MISSING:  # pytype: disable=attribute-error
        out[f.name] = f.default_factory()
    return out

  def build(self, spec: Any, supplied: Mapping[str, Any] | None = None, **kwargs) -> Any:
    """An instance of the part `spec` names, with `kwargs` from the caller.

    Args:
      spec: the part's group of settings (a dict with 'name'), or its name alone.
      supplied: keys the caller gives that a config must not set (defaults to kwargs' keys).
      **kwargs: what the building model supplies (sizes, dtype, initializer, module name).

    Raises:
      UserError: an unknown name, or a setting the part does not have.
    """
    settings = spec_dict(spec)
    cls = self.get(settings.pop('name', None))
    known = {f.name for f in dataclasses.fields(cls) if f.init} - {'parent', 'name'}
    owned = set(kwargs if supplied is None else supplied)
    bad = sorted(k for k in settings if k not in known or k in owned)
    if bad:
      allowed = sorted(known - owned)
      raise UserError(f'{self.kind} {cls.part_name!r} has no setting(s) {", ".join(bad)} '
                      f'(it has: {", ".join(allowed) or "none"})')
    return cls(**settings, **kwargs)
