"""The `modadd` world: a one-layer transformer that groks modular addition (Nanda et al. 2023,
"Progress measures for grokking via mechanistic interpretability").

Input `a b =` (tokens 0 … p−1 for the residues, p for `=`), output (a + b) mod p read at the
last position. The model is Nanda et al.'s: one block, no LayerNorm, ReLU MLP, untied
embeddings, learned positions, biases held at zero, trained full-batch with AdamW and
strong weight decay on a fixed share of the p² pairs until it generalises to the rest. A
grokked model computes the answer with a few key frequencies k: it embeds a residue as
cos/sin(2πka/p), and its logits are sums of cos(2πk(a + b − c)/p). The answer key
(truth/) holds the key frequencies measured from its own weights and the restricted and
excluded losses that confirm them (docs/worlds.md).

Every stage reads the model at the `=` position only (`POSITION`): its SAEs are trained on
the MLP neurons there, `codec extract modadd` writes one row per pair, and the stream walks
the p² pairs in a seeded order, so `--tokens p²` covers each exactly once.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from codec_cli import config as configs
from codec_cli.config import SAETrainConfig
from codec_cli.errors import BadParameter
from codec_cli.nn import sae as saes
from codec_cli.sources import models
from codec_cli.talk import info, progress
from codec_cli.worlds import themes

LANGUAGE = True
"""The model reads token ids (no BOS)."""
POSITION = 2
"""Rows are read at the `=` token, where the answer is computed."""
round_trip = None

HOOK = "blocks.0.mlp.hook_post"
"""The MLP neurons, where the world's SAEs read."""


@dataclass(frozen=True)
class Config:
    """The `modadd` world: the task, the transformer, its training and its SAEs."""

    p: int = 59
    """The modulus (a prime): residues 0 … p−1."""
    frac_train: float = 0.5
    """Share of the p² pairs trained on; the rest measure generalisation."""
    d_model: int = 128
    """Residual stream width."""
    n_heads: int = 4
    """Attention heads."""
    d_head: int = 32
    """Width of each head."""
    d_mlp: int = 512
    """MLP neurons."""
    lr: float = 1e-3
    """AdamW learning rate (after a linear warm-up over the first 10 epochs)."""
    weight_decay: float = 1.0
    """AdamW weight decay: strong, as grokking needs."""
    epochs: int = 5000
    """Full-batch epochs: it groks (test accuracy 0.99) by about epoch 1,250, and the rest is the clean-up
    that concentrates W_E on the key frequencies."""
    log_every: int = 50
    """Epochs between rows of the training curve."""
    seed: int = 1
    """Seed of the initial weights and of the train/test split (1: seed 0 had reached only 0.97 test accuracy
    at epoch 3,000; how long grokking takes varies from seed to seed)."""
    threads: int = 1
    """CPU threads training runs on (the bytes written depend on it)."""
    sae_expansion: float = 1.0
    """SAE width as a multiple of d_mlp (512 latents: the neurons come in few frequency groups)."""
    sae_k: int = 8
    """Active latents per row (TopK SAEs)."""
    sae_steps: int = 3000
    """SAE training steps."""
    sae_batch_size: int = 1024
    """Rows per SAE step."""
    sae_lr: float = 1e-3
    """SAE learning rate."""
    sae_seeds: str = "0,1,2"
    """One SAE per seed: `mlp` is the first seed's, `mlp-sN` the others'."""

    @property
    def n_ctx(self) -> int:
        """`a b =`: three tokens."""
        return 3

    def __post_init__(self):
        configs.check(self, positive=("p", "frac_train", "d_model", "n_heads", "d_head", "d_mlp", "lr", "epochs",
                                      "log_every", "threads", "sae_expansion", "sae_k", "sae_steps", "sae_batch_size",
                                      "sae_lr"), at_least_zero=("weight_decay", "seed"))
        if self.p < 3 or any(self.p % q == 0 for q in range(2, int(math.isqrt(self.p)) + 1)):
            raise BadParameter("p", f"must be a prime of at least 3, got {self.p}")
        if not 0 < self.frac_train < 1:
            raise BadParameter("frac_train", f"is a share, above 0 and below 1, not {self.frac_train}")
        configs.seed_list(self.sae_seeds)


def sae_names(cfg: Config) -> list[tuple[str, int]]:
    return [("mlp" if i == 0 else f"mlp-s{s}", s) for i, s in enumerate(configs.seed_list(cfg.sae_seeds))]


# --------------------------------------------------------------------------- the task


def grid(p: int) -> torch.Tensor:
    """Every input `a b =`, a-major: [p², 3]."""
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    return torch.stack([a, b, torch.full_like(a, p)], 1)


def answers(p: int) -> torch.Tensor:
    x = grid(p)
    return (x[:, 0] + x[:, 1]) % p


def split(cfg: Config) -> torch.Tensor:
    """The training pairs' indices into the grid (sorted); the rest are the test pairs."""
    g = torch.Generator().manual_seed(1_000_003 + cfg.seed)
    n = round(cfg.frac_train * cfg.p ** 2)
    return torch.randperm(cfg.p ** 2, generator=g)[:n].sort().values


def model_config(cfg: Config) -> HookedTransformerConfig:
    return HookedTransformerConfig(n_layers=1, d_model=cfg.d_model, n_heads=cfg.n_heads, d_head=cfg.d_head,
                                   d_mlp=cfg.d_mlp, act_fn="relu", normalization_type=None, d_vocab=cfg.p + 1,
                                   d_vocab_out=cfg.p, n_ctx=3, positional_embedding_type="standard",
                                   init_weights=True, device="cpu", seed=999 + cfg.seed, default_prepend_bos=False)


def answer_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the last position's logits in float64 (the loss falls to ~1e-7, below
    float32's resolution of log-probabilities near 0)."""
    lp = logits[:, -1].to(torch.float64).log_softmax(-1)
    return -lp.gather(-1, y[:, None]).mean()


def train_model(cfg: Config, on_epoch=None) -> tuple[HookedTransformer, pl.DataFrame, dict]:
    """Train from scratch; returns (model, the training curve, metrics)."""
    with models.torch_threads(cfg.threads):
        model = HookedTransformer(model_config(cfg))
        for name, prm in model.named_parameters():
            if "b_" in name:  # as Nanda et al.: biases stay at zero
                prm.requires_grad_(False)
        x, y = grid(cfg.p), answers(cfg.p)
        train = split(cfg)
        test = torch.ones(len(x), dtype=torch.bool)
        test[train] = False
        test = test.nonzero().flatten()
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=cfg.lr,
                                weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(step / 10, 1.0))
        rows, start = [], time.perf_counter()
        for epoch in range(1, cfg.epochs + 1):
            logits = model(x[train])
            loss = answer_loss(logits, y[train])
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            if epoch % cfg.log_every == 0 or epoch == cfg.epochs:
                with torch.no_grad():
                    held = model(x[test])
                rows.append({"epoch": epoch, "train_loss": loss.item(),
                             "train_accuracy": float((logits[:, -1].argmax(-1) == y[train]).double().mean()),
                             "test_loss": float(answer_loss(held, y[test])),
                             "test_accuracy": float((held[:, -1].argmax(-1) == y[test]).double().mean())})
            if on_epoch is not None:
                on_epoch(epoch)
    curve = pl.DataFrame(rows)
    last = rows[-1]
    grokked = curve.filter(pl.col("test_accuracy") >= 0.99)
    memorised = curve.filter(pl.col("train_accuracy") >= 0.99)
    metrics = {**{k: v for k, v in last.items() if k != "epoch"},
               "epoch_train_accuracy_0.99": memorised["epoch"][0] if len(memorised) else None,
               "epoch_test_accuracy_0.99": grokked["epoch"][0] if len(grokked) else None,
               "train_pairs": len(train), "test_pairs": len(test),
               "train_s": time.perf_counter() - start}
    return model.eval(), curve, metrics


def save_model(model: HookedTransformer, directory: Path) -> None:
    themes.save_model(model, directory, tokenizer=False)


def load_model(directory: str | Path, device: str = "cpu") -> HookedTransformer:
    """Read a model written by `save_model`, offline."""
    return themes.load_model(directory, device, tokenizer=False)


def neurons(model: HookedTransformer, p: int) -> torch.Tensor:
    """[p², d_mlp] the MLP neurons at `=` on every input, a-major (grid's order)."""
    with torch.no_grad():
        _, cache = model.run_with_cache(grid(p), names_filter=[HOOK])
    return cache[HOOK][:, POSITION]


# --------------------------------------------------------------------------- the answer key


def fourier_basis(p: int) -> tuple[torch.Tensor, list[int]]:
    """([p, p] an orthonormal basis of functions on the residues, rows: the constant, then
    cos and sin of 2πkx/p for k = 1 … ⌊p/2⌋), and each row's frequency (0 for the constant)."""
    x = torch.arange(p, dtype=torch.float64)
    rows, freq = [torch.full((p,), 1 / math.sqrt(p), dtype=torch.float64)], [0]
    for k in range(1, p // 2 + 1):
        for fn in (torch.cos, torch.sin):
            v = fn(2 * math.pi * k * x / p)
            rows.append(v / v.norm())
            freq.append(k)
    return torch.stack(rows), freq


def embedding_spectrum(model: HookedTransformer, p: int) -> np.ndarray:
    """[⌊p/2⌋] each frequency's share of W_E's non-constant energy (its cos and sin terms)."""
    B, freq = fourier_basis(p)
    energy = (B @ model.W_E[:p].detach().double()).pow(2).sum(1)
    per = np.zeros(p // 2)
    for e, k in zip(energy.tolist(), freq):
        if k:
            per[k - 1] += e
    return per / per.sum()


KEY_SHARE = 0.05
"""A frequency is key when it holds at least this share of W_E's non-constant energy
(uniform would be 1/⌊p/2⌋, 3.4 % at p = 59)."""


def key_frequencies(model: HookedTransformer, p: int) -> list[int]:
    share = embedding_spectrum(model, p)
    return [int(k) + 1 for k in np.flatnonzero(share >= KEY_SHARE)]


def logit_losses(model: HookedTransformer, cfg: Config, keys: list[int]) -> dict:
    """Nanda et al.'s progress measures on every pair: the loss with the logits restricted to
    the key frequencies (their (a, b)-Fourier components at (k, k) and (−k, −k): functions of
    a + b of frequency k, with the constant) and with those components excluded."""
    with torch.no_grad():
        logits = model(grid(cfg.p))[:, -1].double().reshape(cfg.p, cfg.p, cfg.p)  # [a, b, c]
    spec = torch.fft.fft2(logits, dim=(0, 1))
    keep = torch.zeros(cfg.p, cfg.p, dtype=torch.bool)
    keep[0, 0] = True
    for k in keys:
        keep[k, k] = keep[-k, -k] = True
    restricted = torch.fft.ifft2(spec * keep[:, :, None], dim=(0, 1)).real
    diag = keep.clone()
    diag[0, 0] = False
    excluded = torch.fft.ifft2(spec * ~diag[:, :, None], dim=(0, 1)).real
    y = answers(cfg.p)
    train = split(cfg)

    def loss(lg, rows=None):
        lp = lg.reshape(cfg.p ** 2, cfg.p).log_softmax(-1)
        ce = -lp.gather(-1, y[:, None]).flatten()
        return float(ce.mean() if rows is None else ce[rows].mean())

    return {"loss": loss(logits), "restricted_loss": loss(restricted), "excluded_loss": loss(excluded),
            "train_loss": loss(logits, train), "excluded_train_loss": loss(excluded, train),
            "chance_loss": math.log(cfg.p)}


# --------------------------------------------------------------------------- the world


def _order(cfg: Config) -> torch.Tensor:
    return torch.randperm(cfg.p ** 2, generator=torch.Generator().manual_seed(2_000_003 + cfg.seed))


def inputs(cfg: Config, step: int, n: int) -> torch.Tensor:
    """The n inputs of step `step`: the p² pairs in a seeded order, taken in turn and cycling."""
    order = _order(cfg)
    return grid(cfg.p)[order[(torch.arange(n) + step * n) % len(order)]]


def labels(cfg: Config, x) -> dict:
    """Ground truth per row (each row one input `a b =`): a, b and the answer."""
    x = torch.as_tensor(x)
    a, b = x[:, 0].long(), x[:, 1].long()
    return {"a": a.numpy().astype(np.int32), "b": b.numpy().astype(np.int32),
            "answer": ((a + b) % cfg.p).numpy().astype(np.int32)}


def _sae_config(cfg: Config, seed: int) -> SAETrainConfig:
    return SAETrainConfig(architecture="topk", expansion_factor=cfg.sae_expansion, k=cfg.sae_k, lr=cfg.sae_lr,
                          batch_size=cfg.sae_batch_size, steps=cfg.sae_steps, seed=seed, checkpoint_every=0)


def build(cfg: Config, w) -> None:
    """Train the transformer until it groks, measure its key frequencies, train its SAEs."""
    with progress("modadd model", cfg.epochs, unit="epochs") as bar:
        model, curve, metrics = train_model(cfg, on_epoch=lambda e: bar.update(completed=e))
    info(f"model: train accuracy {metrics['train_accuracy']:.4f}, test accuracy {metrics['test_accuracy']:.4f} "
         f"(0.99 at epoch {metrics['epoch_test_accuracy_0.99']}), {metrics.pop('train_s'):.0f} s")
    save_model(model, w.path / "model")
    w.write_table("curve.parquet", curve)
    share = embedding_spectrum(model, cfg.p)
    keys = key_frequencies(model, cfg.p)
    losses = logit_losses(model, cfg, keys)
    truth = {"key_frequencies": keys, "key_energy_share": float(share[[k - 1 for k in keys]].sum()),
             "key_share_threshold": KEY_SHARE, **losses}
    w.write_json("truth/key_frequencies.json", truth)
    w.write_table("truth/spectrum.parquet", pl.DataFrame({"frequency": np.arange(1, cfg.p // 2 + 1, dtype=np.int32),
                                                          "energy_share": share}))
    w.write_table("truth/split.parquet", pl.DataFrame({"pair": split(cfg).numpy().astype(np.int32)}))
    info(f"key frequencies {keys}: {truth['key_energy_share']:.1%} of W_E's energy; restricted loss "
         f"{losses['restricted_loss']:.3g}, excluded loss {losses['excluded_loss']:.3g}")
    sae_metrics = {}
    src = models.Source("codec-modadd", model, lambda step, n: inputs(cfg, step, n), True, HOOK, POSITION)
    for name, seed in sae_names(cfg):
        with models.torch_threads(cfg.threads):
            sae, _, sae_metrics[name] = saes.train_on_source(_sae_config(cfg, seed), src, HOOK)
        saes.save(sae, w.path / "saes" / name)
        info(f"SAE {name}: L0 {sae_metrics[name]['l0']:.2f}, FVU {sae_metrics[name]['fvu']:.4f}, "
             f"dead {sae_metrics[name]['dead_fraction']:.1%}")
    w.write_json("metrics.json", {"model": metrics, "saes": sae_metrics})
    w.attrs.update(hooks=sorted(model.hook_dict), saes={name: HOOK for name, _ in sae_names(cfg)},
                   default_sae="mlp", p=cfg.p, d_model=cfg.d_model, d_mlp=cfg.d_mlp, n_ctx=3, position=POSITION)
