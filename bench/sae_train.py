"""SAE-training throughput against the bare model forward, both measured in this run.

On the shipped `themes` world: tokens/s of the forward pass up to the SAE's hook (the
floor any streaming trainer pays) and tokens/s of `codec_cli.nn.sae.train` streaming the
same activations, with the ratio between them.
"""

from __future__ import annotations

import time

import torch

from codec_cli.sources import models
from codec_cli.nn import sae as saes
from codec_cli.worlds import open_world

STEPS = 60


def main() -> None:
    torch.set_num_threads(1)
    world = open_world("themes")
    src = models.load_source("themes")
    hook = src.default_hook
    per_step = -(-1024 // (world.artifact.attrs["n_ctx"] - 1))
    rows = per_step * (world.artifact.attrs["n_ctx"] - 1)

    models.activations(src, hook, 0, per_step)  # warm-up
    t = time.perf_counter()
    for step in range(STEPS):
        models.activations(src, hook, step, per_step)
    forward = STEPS * rows / (time.perf_counter() - t)

    cfg = saes.SAETrainConfig(expansion_factor=4, k=8, steps=STEPS, batch_size=rows, checkpoint_every=0)
    t = time.perf_counter()
    saes.train(cfg, lambda step: models.activations(src, hook, step, per_step), world.artifact.attrs["d_model"])
    training = STEPS * rows / (time.perf_counter() - t)

    print(f"{'what':<40}{'tokens/s':>12}{'x forward':>12}")
    print(f"{'forward to ' + hook:<40}{forward:>12,.0f}{1.0:>12.2f}")
    print(f"{'SAE training (stream + step)':<40}{training:>12,.0f}{training / forward:>12.2f}")


if __name__ == "__main__":
    main()
