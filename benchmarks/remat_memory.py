r"""Does jax.checkpoint save memory as XLA compiles it here? A toy, outside the models.

  python benchmarks/remat_memory.py

Eight dense layers (tanh(tanh(x W) W^T), W 512 x 2048) on 4,096 x 512 inputs; XLA's memory
analysis (temp bytes) of the compiled gradient, with and without `jax.checkpoint` per layer,
for the layers written as a Python loop (unrolled, as the Transformer's are) and under
`lax.scan`. Prints one JSON line per setting.
"""
import json

import jax
import jax.numpy as jnp

LAYERS, ROWS, WIDTH, HIDDEN = 8, 4096, 512, 2048


def layer(w, x):
  return jnp.tanh(jnp.tanh(x @ w) @ w.T)


def unrolled(ws, x, remat):
  f = jax.checkpoint(layer) if remat else layer
  for i in range(LAYERS):
    x = f(ws[i], x)
  return jnp.sum(x ** 2)


def scanned(ws, x, remat):
  f = jax.checkpoint(layer) if remat else layer
  x, _ = jax.lax.scan(lambda x, w: (f(w, x), None), x, ws)
  return jnp.sum(x ** 2)


def main() -> None:
  ws = jnp.full((LAYERS, WIDTH, HIDDEN), 0.01, jnp.float32)
  x = jnp.ones((ROWS, WIDTH), jnp.float32)
  for name, fn in (('python_loop', unrolled), ('lax_scan', scanned)):
    for remat in (False, True):
      compiled = jax.jit(jax.grad(fn), static_argnums=2).lower(ws, x, remat).compile()
      print(json.dumps({'layers': name, 'remat': remat, 'backend': jax.default_backend(),
                        'temp_mb': round(compiled.memory_analysis().temp_size_in_bytes / 2**20,
                                         1)}), flush=True)


if __name__ == '__main__':
  main()
