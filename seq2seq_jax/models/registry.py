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
A registry made with `package=` also finds a part by module name: a name it does not hold
yet is looked for in `<package>.<name>` (imported on first use, as `build_model` finds
`models/<name>.py`), so a part in its own file named after it needs no import anywhere.
"""
import dataclasses
import importlib
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


def is_frozen(value: Any) -> bool:
  """Whether `value` is a spec as freeze() writes it."""
  return (isinstance(value, tuple) and bool(value)
          and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in value)
          and 'name' in dict(value))


class Registry:
  """Named classes of one kind of part."""

  def __init__(self, kind: str, package: str | None = None):
    self.kind = kind       # the config key that chooses one, for error messages
    self.package = package  # where a part named `x` not yet registered may live: package.x
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
    if name not in self._classes and self.package and isinstance(name, str) \
        and name.isidentifier():
      try:   # a part in its own file, `<package>/<name>.py`, registers itself on import
        importlib.import_module(f'{self.package}.{name}')
      except ModuleNotFoundError as e:
        if e.name != f'{self.package}.{name}':
          raise
    if name not in self._classes:
      raise UserError(f'{self.kind}.name={name!r} is not one of {", ".join(self._classes)}')
    return self._classes[name]

  def settings_of(self, spec: Any, supplied: tuple[str, ...] = ()) -> dict[str, Any]:
    """The spec with every setting it leaves out at its default ('name' first): what the
    part is built with, for comparing two specs; `supplied` keys (the model's) left out."""
    given = spec_dict(spec)
    name = given.pop('name', None)
    defaults = {k: v for k, v in self.settings(name).items() if k not in supplied}
    return {'name': name, **defaults, **given}

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
