"""The trainer: setup, steps, loop, input feed, checkpoints, optimizers, sharding, metrics, throughput, warm start."""
