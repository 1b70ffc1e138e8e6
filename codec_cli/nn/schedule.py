"""The learning-rate schedule of codec's training loops: a linear warm-up, then a decay.

One function, so that the themes model and the Squeezer mean the same thing by "warm-up
then cosine". The toy model and the SAEs train at a constant rate (the toy paper's
recipe, and sae-lens's default), which is `decay="constant"` with no warm-up.
"""

from __future__ import annotations

import math
import typing

from codec_cli.config import Decay

DECAYS = typing.get_args(Decay)


def learning_rate(step: int, steps: int, *, peak: float = 1.0, warmup: int = 0, decay: str = "cosine",
                  final: float = 0.0, end: int | None = None) -> float:
    """The rate at step `step` (0-based) of a run of `steps`.

    Steps 0 … warmup-1 ramp linearly up to `peak` (step 0 at peak/warmup, never 0); then
    the rate decays (`constant`, `linear` or `cosine`) from `peak` to `final` × `peak`,
    reached at step `end` and held after it. `end` defaults to the last step, `steps` - 1.
    A warm-up longer than the run is not shortened: the run stops on the ramp.
    With `peak` 1 the result is a factor for `torch.optim.lr_scheduler.LambdaLR`.
    """
    if decay not in DECAYS:
        raise ValueError(f"decay must be one of {', '.join(DECAYS)}, got {decay!r}")
    if step < warmup:
        # peak * (step + 1) first, then the division: the order the Squeezer's runs were made with.
        return peak * (step + 1) / warmup
    if decay == "constant":
        return peak
    end = steps - 1 if end is None else end
    t = min((step - warmup) / max(end - warmup, 1), 1.0)
    shape = 1.0 - t if decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * t))
    return peak * (final + (1.0 - final) * shape)
