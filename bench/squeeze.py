"""The Squeezer's training step against this machine's matrix-multiply speed, measured in this run.

At the issue's size (F=24,576 features, M=768 neurons, batch 1,024, k=64 active inputs):

- matmul: the three products a step needs (decoder forward, its two backward products),
  run bare; their GFLOP/s is the ceiling;
- step: one full training step (sparse encoder, fused decoder loss, backward, AdamW),
  its steps/s and achieved GFLOP/s counted on those same three products (target: at
  least half the ceiling);
- sparse vs dense encoder: the embedding_bag over the k active features against a dense
  F-wide input times W_enc, forward and backward (ratio);
- fused vs autograd decoder loss: `DecoderLoss` against the same loss written plainly;
- squeeze: `codec squeeze` end to end over a features artifact on disk, tokens/s
  against the bare step loop (the cost of streaming, shuffling and bookkeeping).

    python bench/squeeze.py [--device cuda] [--dtype bfloat16] [--f 24576] [--m 768]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from codec_cli.nn.squeezer import Squeezer


def timed(fn, repeat: int, sync) -> float:
    """Seconds per call, best of `repeat` after one warm-up call."""
    fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def batch(F: int, B: int, k: int, device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randperm(F, generator=g)[:k] for _ in range(B)]).to(device)
    return idx, torch.rand(B, k, generator=g).to(device)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--f", type=int, default=24_576)
    p.add_argument("--m", type=int, default=768)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--e2e-steps", type=int, default=12)
    a = p.parse_args()
    F, M, B, k, dev = a.f, a.m, a.batch, a.k, torch.device(a.device)
    dt = getattr(torch, a.dtype)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    flops = 3 * 2 * B * M * F  # decoder forward plus its two backward products
    print(f"# squeeze bench: F={F} M={M} batch={B} k={k} {a.device} {a.dtype}, {torch.get_num_threads()} threads")

    h, W, b = torch.randn(B, M, device=dev, dtype=dt), torch.randn(M, F, device=dev, dtype=dt), torch.zeros(F, device=dev, dtype=dt)
    g = torch.randn(B, F, device=dev, dtype=dt)

    def matmuls():
        torch.addmm(b, h, W)
        g @ W.T
        h.T @ g

    t_mm = timed(matmuls, a.repeat, sync)
    print(f"matmul   {flops / t_mm / 1e9:8.1f} GFLOP/s  (the three products bare, {t_mm * 1e3:.0f} ms)")

    s = Squeezer(F, M, seed=0).to(dev)
    s.compute_dtype = None if dt == torch.float32 else dt
    opt = torch.optim.AdamW(s.parameters(), lr=1e-3)
    idx, val = batch(F, B, k, dev)

    def step():
        loss = s.loss(idx, val)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()

    t_step = timed(step, a.repeat, sync)
    print(f"step     {flops / t_step / 1e9:8.1f} GFLOP/s  {1 / t_step:.2f} steps/s  {B / t_step:,.0f} tokens/s"
          f"  -> {t_mm / t_step:.2f}x the matmul ceiling (target >= 0.5)")

    Wenc = torch.randn(F, M, device=dev, requires_grad=True)

    def sparse_encoder():
        Wenc.grad = None
        torch.nn.functional.embedding_bag(idx, Wenc, per_sample_weights=val, mode="sum").sum().backward()

    def dense_encoder():
        Wenc.grad = None
        x = torch.zeros(B, F, device=dev).scatter_add_(1, idx, val)
        (x @ Wenc).sum().backward()

    t_sparse, t_dense = timed(sparse_encoder, a.repeat, sync), timed(dense_encoder, a.repeat, sync)
    print(f"encoder  sparse {t_sparse * 1e3:.1f} ms, dense {t_dense * 1e3:.1f} ms  -> sparse is {t_dense / t_sparse:.1f}x faster")

    def plain_loss():
        s.zero_grad(set_to_none=True)
        hh = s.encode(idx, val)
        x = torch.zeros(B, F, device=dev).scatter_add_(1, idx, val)
        x_hat = torch.relu(torch.baddbmm(s.b_dec.unsqueeze(1), hh, s.decoder()))
        ((x_hat - x) ** 2).mean().backward()

    def fused_loss():
        s.zero_grad(set_to_none=True)
        s.loss(idx, val).sum().backward()

    t_plain, t_fused = timed(plain_loss, a.repeat, sync), timed(fused_loss, a.repeat, sync)
    print(f"loss     fused {t_fused * 1e3:.0f} ms, autograd {t_plain * 1e3:.0f} ms  -> fused is {t_plain / t_fused:.2f}x faster")

    if a.e2e_steps:
        end_to_end(a, t_step)


def end_to_end(a, t_step: float) -> None:
    """`squeeze()` over a features artifact on disk, against the bare step time above."""
    from codec_cli.artifacts import ArtifactWriter
    from codec_cli.stages.squeeze import SqueezeConfig, squeeze

    rows = a.batch * (a.e2e_steps + 4)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        with ArtifactWriter(Path(tmp) / "f", "features", command="bench", attrs={"d_sae": a.f, "k": a.k}) as w:
            for start in range(0, rows, 8192):
                n = min(8192, rows - start)
                idx = rng.integers(0, a.f, (n, a.k), dtype=np.int32)  # a rare repeat in a row is harmless here
                w.write_topk(idx, np.sort(rng.random((n, a.k)).astype(np.float32), axis=1)[:, ::-1])
        cfg = SqueezeConfig(features=Path(tmp) / "f", m=a.m, k=a.k, batch_size=a.batch, steps=a.e2e_steps,
                            eval_rows=a.batch, faithfulness=False, checkpoint_every=0, device=a.device,
                            dtype=a.dtype, out=Path(tmp) / "sq")
        metrics = squeeze(cfg)
    per_step = 1 / metrics["steps_per_s"]
    print(f"squeeze  {metrics['tokens_per_s']:,.0f} tokens/s end to end over {a.e2e_steps} steps"
          f"  -> {per_step / t_step:.2f}x the bare step (reading, shuffling, warm-up step and evaluation excluded)")


if __name__ == "__main__":
    main()
