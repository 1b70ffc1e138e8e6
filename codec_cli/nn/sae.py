"""SAE training on any activation stream, with sae-lens's own training SAE classes.

The stream is a function `batch(step) -> Tensor[batch_size, d_in]`: the activations of
step `step` depend on nothing but the step, so a run resumed from its last checkpoint
sees exactly the batches an uninterrupted one would, and ends with the same weights.

Saved SAEs are sae-lens directories (`cfg.json` + `sae_weights.safetensors`), opened
by `sae_lens.SAE.load_from_disk`. Checkpoints are safetensors + JSON, never pickle.

Metrics (docs/sae.md has the formulas): L0, the fraction of variance unexplained
(FVU, 1 − FVE with the canonical, centred variance), and the dead-feature fraction.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable

import torch

from codec_cli import config, talk
from codec_cli.config import SAETrainConfig
from codec_cli.errors import BadInput, CodecError
from codec_cli.nn import checkpoint as checkpoints
from codec_cli.sources import models

# sae-lens is imported by the functions that make an SAE, not here: the worlds import this
# module for `width`, to check their parameters, and that should not cost sae-lens's import
# (a second on top of transformer-lens's, several without it).


def width(cfg: SAETrainConfig, d_in: int) -> int:
    """The SAE's number of latents for inputs of width d_in; refuses a k wider than that."""
    d_sae = max(1, round(cfg.expansion_factor * d_in))
    if cfg.architecture == "topk" and cfg.k > d_sae:
        raise BadInput(f"--k {cfg.k} is larger than the SAE's width {d_sae}")
    need, have = training_bytes(d_in, d_sae), physical_memory()
    if have is not None and need > have:
        raise BadInput(f"--expansion-factor {cfg.expansion_factor:,.10g} makes an SAE of {d_sae:,} latents, whose "
                       f"training needs about {need / 2**30:,.1f} GiB; this machine has {have / 2**30:,.1f} GiB",
                       hint=f"lower --expansion-factor (at most about {have / training_bytes(d_in, 1) / d_in:.3g} "
                            f"for d_in {d_in})")
    return d_sae


def training_bytes(d_in: int, d_sae: int) -> int:
    """A floor on training's memory: float32 encoder and decoder, each with its gradient
    and Adam's two moments; checked so that a typo fails at once, not in the allocator."""
    return 4 * 2 * d_in * d_sae * 4


def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on this platform: let the allocator say
        return None


def make_sae(cfg: SAETrainConfig, d_in: int, metadata: dict | None = None):
    """A fresh sae-lens training SAE; `metadata` (hook_name, model_name, …) travels into cfg.json."""
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    d_sae = width(cfg, d_in)
    torch.manual_seed(cfg.seed)
    meta = SAEMetadata(**(metadata or {}))
    if cfg.architecture == "topk":
        return TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=cfg.k, metadata=meta))
    return StandardTrainingSAE(StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae,
                                                         l1_coefficient=cfg.l1_coefficient, metadata=meta))


def train(cfg: SAETrainConfig, batch: Callable[[int], torch.Tensor], d_in: int, metadata: dict | None = None,
          checkpoint: Path | None = None, on_step: Callable[[int, dict], None] | None = None):
    """Train an SAE on `batch(step)`; resumes from `checkpoint` when one is there, if it was
    made with the same settings (all but `steps` and `checkpoint_every`, and `metadata`).

    Returns (sae, history), history being one dict of losses every 50 steps.
    """
    from sae_lens.saes.sae import TrainStepInput

    run = {k: v for k, v in config.to_dict(cfg).items() if k not in ("steps", "checkpoint_every")}
    run |= {"d_in": d_in, "metadata": metadata or {}}
    sae = make_sae(cfg, d_in, metadata)
    sae.train()
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    state = (checkpoint and checkpoints.load(checkpoint, sae, opt, run)) or checkpoints.State(
        extra={"steps_since_fired": torch.zeros(sae.cfg.d_sae, dtype=torch.long)})
    coefficients = {k: (v.value if hasattr(v, "value") else v) for k, v in sae.get_coefficients().items()}
    for step in range(state.step, cfg.steps):
        x = batch(step)
        out = sae.training_forward_pass(TrainStepInput(
            sae_in=x, coefficients=coefficients, dead_neuron_mask=state.extra["steps_since_fired"] >= cfg.dead_window,
            n_training_steps=step, is_logging_step=False))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)  # as sae-lens's own trainer does
        opt.step()
        with torch.no_grad():
            fired = (out.feature_acts > 0).any(0)
            state.extra["steps_since_fired"] = torch.where(fired, 0, state.extra["steps_since_fired"] + 1)
        state.step = step + 1
        if step % 50 == 0 or state.step == cfg.steps:
            row = {"step": state.step, "loss": out.loss.item()} | {k: v.item() for k, v in out.losses.items()}
            if not math.isfinite(row["loss"]):
                raise CodecError(f"SAE training diverged at step {state.step} (loss {row['loss']})",
                                 hint="lower --lr")
            state.history.append(row)
            if on_step:
                on_step(state.step, row)
        if checkpoint and cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
            checkpoints.save(checkpoint, sae, opt, state, run)
    sae.eval()
    return sae, state.history


def save(sae, path: Path) -> None:
    """Save in sae-lens's format (the inference form of a training SAE), with cfg.json's
    keys sorted: sae-lens builds it from a set, whose order changes from run to run."""
    (sae.save_inference_model if hasattr(sae, "save_inference_model") else sae.save_model)(path)
    cfg = Path(path) / "cfg.json"
    cfg.write_text(json.dumps(json.loads(cfg.read_text()), indent=2, sort_keys=True) + "\n")


def evaluate(sae, x: torch.Tensor) -> dict[str, float]:
    """L0, FVU and dead fraction of `sae` on activations `x` [n, d_in]."""
    with torch.no_grad():
        acts = sae.encode(x)
        recon = sae.decode(acts)
    fired = (acts > 0)
    residual = ((x - recon) ** 2).sum()
    total = ((x - x.mean(0)) ** 2).sum()
    return {
        "l0": float(fired.sum(-1).float().mean()),
        "fvu": float(residual / total) if total > 0 else None,  # undefined where x never varies: null
        "dead_fraction": float((~fired.any(0)).float().mean()),
        "d_sae": int(acts.shape[-1]),
    }


def ce_loss_recovered(model, sae, hook: str, tokens: torch.Tensor) -> dict[str, float]:
    """How much of the language-modelling loss survives splicing the SAE in at `hook`:
    (CE_zero − CE_sae) / (CE_zero − CE_clean), 1 = no loss, 0 = as bad as zeroing it."""
    def splice(acts, hook=None):
        return sae.decode(sae.encode(acts)).to(acts.dtype)

    def zero(acts, hook=None):
        return torch.zeros_like(acts)

    with torch.no_grad():
        clean = float(model(tokens, return_type="loss"))
        spliced = float(model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(hook, splice)]))
        zeroed = float(model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(hook, zero)]))
    return {"ce_clean": clean, "ce_sae": spliced, "ce_zero_ablation": zeroed,
            "ce_loss_recovered": (zeroed - spliced) / (zeroed - clean) if zeroed != clean else None}


def train_on_source(cfg: SAETrainConfig, src, hook: str, checkpoint: Path | None = None, context: int | None = None):
    """Train on a `models.Source` at `hook`, showing progress (codec_cli.talk), then measure on held-out
    data (and, for language models, the CE loss recovered). Returns (sae, history, metrics)."""
    probe = models.activations(src, hook, 0, 1)
    per_step = math.ceil(cfg.batch_size / probe.shape[0])
    by_token = src.language and src.position is None  # every position after BOS is a row
    meta = {"hook_name": hook, "model_name": src.name, "prepend_bos": by_token,
            "context_size": (context or probe.shape[0] + 1) if by_token else None}
    with talk.progress(f"sae {cfg.architecture} @ {hook}", cfg.steps, unit="steps") as bar:
        sae, history = train(cfg, lambda step: models.activations(src, hook, step, per_step)[: cfg.batch_size],
                             probe.shape[-1], meta, checkpoint=checkpoint,
                             on_step=lambda step, row: bar.update(completed=step))
    metrics = evaluate(sae, models.activations(src, hook, models.HELD_OUT, 4 * per_step))
    if by_token:  # a model that reads one position has no next-token loss at the others
        metrics |= ce_loss_recovered(src.model, sae, hook, src.inputs(models.HELD_OUT + 1, 64))
    return sae, history, metrics
