"""`codec steer`'s hook against plain generation, all measured in this run.

Generation is the loop `codec steer` runs (a key-value cache, one new token per step, the
target mass read at each step), timed with no hook and with the steering hook in place at
strength 0, where it changes nothing but still runs (target: at most 1.05x). Clamping,
which encodes and decodes through the SAE at every step, is shown beside it.

Two models: the shipped `themes` world (tiny: Python overhead shows) and a randomly
initialised GPT-2-small-shaped HookedTransformer (12 layers, d_model 768, vocabulary
50,257) with a random 8,192-wide TopK SAE at blocks.6.hook_resid_pre. Each arm runs
ROUNDS times, interleaved, and the median is kept.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import tiny_models  # noqa: E402

from codec_cli.config import SteerConfig  # noqa: E402
from codec_cli.sources.theme import Setting  # noqa: E402
from codec_cli.stages.steer import Intervention, generate  # noqa: E402

ROUNDS = 7


class NoOp:
    """A hook that returns its input: what any transformer-lens hook costs, the floor for ours."""

    first = 0

    def __call__(self, x, hook=None):
        return x


def setting_for(model, sae, hook: str) -> Setting:
    return Setting(model, sae.eval(), hook, None, None, None, None, None, None, None)


def arms(setting: Setting, d: int) -> dict:
    v = torch.randn(d, generator=torch.Generator().manual_seed(0))
    return {"plain": None,
            "no-op hook": NoOp(),
            "add, s = 0": Intervention("add", 0.0, direction=v / v.norm(), setting=setting),
            "clamp 8 atoms": Intervention("clamp", 0.0, setting=setting, atoms=torch.arange(8),
                                          values=torch.zeros(8))}


def bench(name: str, setting: Setting, prompts: list[torch.Tensor], new: int, batch: int) -> None:
    cfg = SteerConfig("bench", themes=Path("."), theme="0", greedy=True, batch_size=batch)
    targets = np.arange(10)
    runs = arms(setting, setting.sae.cfg.d_in)
    times = {k: [] for k in runs}
    tokens = len(prompts) * new
    generate(setting, prompts[:batch], 2, None, targets, cfg)  # warm-up
    for _ in range(ROUNDS):
        for arm, iv in runs.items():
            t = time.perf_counter()
            generate(setting, prompts, new, iv, targets, cfg)
            times[arm].append(time.perf_counter() - t)
    base = statistics.median(times["plain"])
    print(f"\n{name}: {len(prompts)} prompts of {len(prompts[0])} tokens, {new} new tokens each, batches of {batch}")
    for arm, ts in times.items():
        m = statistics.median(ts)
        print(f"  {arm:14s} {tokens / m:9,.0f} tokens/s   {m / base:5.3f}x plain")


def main() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    from codec_cli.worlds import open_world

    world = open_world("themes")
    model, sae = world.model().eval(), world.sae("resid0")
    docs = world.config()[0].texts(world.config()[1], 64)[0]
    bench("themes world (resid0)", setting_for(model, sae, "blocks.0.hook_resid_pre"),
          [d[:8] for d in docs], 24, 32)

    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=12, d_model=768, n_ctx=256, d_head=64, n_heads=12, d_mlp=3072,
                                  d_vocab=50257, act_fn="gelu_new", normalization_type="LN")
    gpt2 = HookedTransformer(cfg).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = tiny_models.sae(Path(tmp) / "sae", 768, 8192, "blocks.6.hook_resid_pre", "gpt2-shaped", k=32)
        from codec_cli.sources.models import load_sae_dir

        big = load_sae_dir(path)
    prompts = [torch.randint(0, 50257, (16,), generator=torch.Generator().manual_seed(i)) for i in range(8)]
    bench("GPT-2-small-shaped (random weights)", setting_for(gpt2, big, "blocks.6.hook_resid_pre"), prompts, 16, 8)


if __name__ == "__main__":
    main()
