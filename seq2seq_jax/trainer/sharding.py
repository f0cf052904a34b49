"""Device mesh, logical-axis rules and the shardings the trainer compiles with.

The mesh has three axes, sized from `config.mesh` (-1 takes the remaining devices):
  data   - pure data parallelism (batch split, parameters replicated)
  fsdp   - batch split AND parameters/optimizer state split (ZeRO-3 style)
  tensor - Megatron-style splitting of heads / MLP / vocabulary dimensions
Parameters carry logical names ('embed', 'mlp', ...); `config.logical_axis_rules` maps them
to mesh axes, so parallelism is a config change, never a model change. How host data becomes
sharded global batches is seq2seq_jax/trainer/feed.py.
"""
import contextlib
import math
from typing import Any, Iterator, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from seq2seq_jax.errors import UserError

MESH_AXES = ('data', 'fsdp', 'tensor')


def mesh_shape(mesh_config: Any, num_devices: int) -> tuple[int, int, int]:
  """Resolves `config.mesh` sizes (one may be -1) against the device count."""
  sizes = []
  for axis in MESH_AXES:
    v = mesh_config.get(axis, 1)
    if not isinstance(v, int) or (v < 1 and v != -1):
      raise UserError(f'mesh.{axis} must be a positive int or -1, got {v!r}')
    sizes.append(v)
  if sizes.count(-1) > 1:
    raise UserError('at most one of mesh.data/fsdp/tensor may be -1')
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % known:
      raise UserError(f'mesh {dict(zip(MESH_AXES, sizes))} does not divide {num_devices} devices')
    sizes[sizes.index(-1)] = num_devices // known
  if math.prod(sizes) > num_devices:
    raise UserError(f'mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, '
                    f'but {num_devices} are available')
  return tuple(sizes)


def make_mesh(mesh_config: Any, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds the ('data', 'fsdp', 'tensor') mesh over all (global) devices."""
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(mesh_config, len(devices))
  # A mesh smaller than the machine (e.g. (1, 1, 1) for a reference run) uses the first
  # devices; multi-process runs must cover every process, so they use them all.
  devices = devices[:math.prod(shape)]
  try:
    # Topology-aware device order on TPU/GPU; a plain reshape elsewhere.
    from jax.experimental import mesh_utils  # pylint: disable=g-import-not-at-top
    grid = mesh_utils.create_device_mesh(shape, devices)
  except Exception:  # pylint: disable=broad-except
    grid = np.asarray(devices).reshape(shape)
  # Auto axes: XLA propagates shardings between our explicit in/out/constraint points.
  return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def axis_rules(config: Any) -> tuple[tuple[str, Any], ...]:
  """`config.logical_axis_rules` as the tuple-of-pairs flax expects."""
  rules = []
  for rule in config.logical_axis_rules:
    name, target = rule
    if isinstance(target, list):
      target = tuple(target)
    for t in (target if isinstance(target, tuple) else (target,)):
      if t is not None and t not in MESH_AXES:
        raise UserError(f'logical_axis_rules: {name!r} -> unknown mesh axis {t!r} '
                        f'(known: {", ".join(MESH_AXES)})')
    rules.append((name, target))
  return tuple(rules)


@contextlib.contextmanager
def activate(mesh: Mesh, rules) -> Iterator[None]:
  """Context for tracing model code: mesh + logical rules (for activation constraints)."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    yield


def logical_to_shardings(boxed_abstract: Any, mesh: Mesh, rules) -> Any:
  """NamedShardings for a pytree whose leaves may be nn.LogicallyPartitioned boxes.

  Unboxed leaves (step counters, optimizer scalars) are replicated. A dimension whose size
  the mesh axes do not divide (e.g. a 43-symbol vocabulary over tensor=2) stays unsplit
  rather than failing: the rule is a preference, the model's sizes are the truth.
  """
  def fit(x, spec):
    if spec is None:
      return NamedSharding(mesh, P())
    dims = []
    for size, axes in zip(x.shape, tuple(spec) + (None,) * (len(x.shape) - len(spec))):
      names = axes if isinstance(axes, tuple) else (axes,) if axes else ()
      ways = math.prod(mesh.shape[a] for a in names)
      dims.append(axes if ways and size % ways == 0 else None)
    return NamedSharding(mesh, P(*dims))

  def leaf(v):
    # Box by box, so that leafless nodes (optax's MaskedNode where optimizer.freeze leaves a
    # parameter without state, boxed or not) keep their place in the tree.
    if isinstance(v, nn.Partitioned) and not jax.tree.leaves(v.value):
      return v.value
    if isinstance(v, nn.LogicallyPartitioned):
      return fit(v.value, nn.logical_to_mesh_axes(v.names, rules))
    if isinstance(v, nn.Partitioned):
      return fit(v.value, P(*v.names))
    return fit(v, None)

  return jax.tree.map(leaf, boxed_abstract, is_leaf=lambda v: isinstance(v, nn.Partitioned))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


