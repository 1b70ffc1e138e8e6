"""`codec squeeze`: train the Squeezer on extracted features and report what it packed.

    codec squeeze features/ --m 768 --k 64 --out squeezer/

Reads the `features` artifact in shuffled batches (`features.Batches`), trains one or
several Squeezers side by side (`squeezer.Squeezer`), keeps the best on held-out rows,
and writes the `squeezer` artifact: weights, the training curve, per-feature and
per-neuron tables, and metrics.json — including the faithfulness ratio, the Squeezer's
error over that of the model's own codec (docs/metrics.md).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from codec_cli import config, talk
from codec_cli.artifacts import ArtifactWriter, check_output, open_artifact
from codec_cli.config import SqueezeConfig, quantile
from codec_cli.errors import BadInput, CodecError
from codec_cli.nn import checkpoint as checkpoints
from codec_cli.nn import schedule
from codec_cli.nn.squeezer import Squeezer
from codec_cli.stages import seeds
from codec_cli.sources import models
from codec_cli.sources.features import Batches, Stats
from codec_cli.talk import info, progress

CALIBRATION_ROWS = 1 << 16
"""Rows that estimate each feature's quantile for --rescale pNN."""
CURVE_POINTS = 500
"""About this many rows in training.parquet, each the mean loss since the last."""
CHUNK = 1024
"""Rows per step of the evaluation."""


def learning_rate(cfg: SqueezeConfig, step: int, steps: int) -> float:
    """The rate for step `step` (0-based) of `steps`: warm-up, then the decay to final_lr·lr at the last step."""
    return schedule.learning_rate(step, steps, peak=cfg.lr, warmup=cfg.warmup, decay=cfg.decay, final=cfg.final_lr)


# --------------------------------------------------------------------------- inputs


def feature_stats(art) -> dict[str, np.ndarray]:
    """Per feature: count, frequency, mean and max (features.parquet, or counted from the shards).
    Reads and checks every shard either way, so that bad data is refused now, not halfway
    through training."""
    stats = None if "features.parquet" in art.manifest["files"] else Stats(art.attrs["d_sae"])
    for shard in art.topk():
        if stats is not None:
            stats.add({"indices": shard.indices, "values": shard.values})
    if stats is None:
        t = art.table("features.parquet", ["count", "frequency", "mean", "max"])
        return {c: t[c].to_numpy() for c in ("count", "frequency", "mean", "max")}
    t = stats.table()
    return {c: t[c] for c in ("count", "frequency", "mean", "max")}


def scales(rescale: str, stats: dict, batches) -> np.ndarray:
    """The divisor of each feature, float32 [F]; 1 where a feature never fired."""
    F = len(stats["max"])
    if rescale == "none":
        return np.ones(F, np.float32)
    scale = stats["max"].astype(np.float64)
    q = quantile(rescale)
    if q is not None:
        pieces, rows = [], 0
        for p in batches.train:
            pieces.append(p)
            rows += p.rows
            if rows >= CALIBRATION_ROWS:
                break
        idx, val = batches.read(pieces)
        idx, val = idx[:CALIBRATION_ROWS].ravel(), val[:CALIBRATION_ROWS].ravel()
        keep = (idx >= 0) & (val > 0)
        idx, val = idx[keep], val[keep]
        order = np.lexsort((val, idx))
        idx, val = idx[order], val[order]
        start = np.searchsorted(idx, np.arange(F))
        count = np.searchsorted(idx, np.arange(F), side="right") - start
        seen = count > 0
        at = start + np.floor(q * (np.maximum(count, 1) - 1)).astype(np.int64)
        scale = np.where(seen, val[np.minimum(at, len(val) - 1)] if len(val) else 0.0, scale)
    return np.where(scale > 0, scale, 1.0).astype(np.float32)


def importance(spec: str, stats: dict) -> np.ndarray | None:
    """Per-feature loss weights with mean 1, float32 [F]; None for uniform."""
    F = len(stats["frequency"])
    if spec == "uniform":
        return None
    if spec == "frequency":
        w = stats["frequency"].astype(np.float64)
    else:
        path = Path(spec)
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "no such file"
            raise BadInput(f"--importance {spec}: {what}; give uniform, frequency or a parquet table "
                           "with columns feature and importance")
        try:
            t = pl.read_parquet(path)
        except Exception as e:
            raise BadInput(f"{path}: not a readable parquet table ({type(e).__name__})") from None
        if not {"feature", "importance"} <= set(t.columns):
            raise BadInput(f"{path}: needs columns feature and importance, has {', '.join(t.columns)}")
        feature, value = t["feature"].to_numpy(), t["importance"].to_numpy().astype(np.float64)
        if len(feature) != F or sorted(feature.tolist()) != list(range(F)):
            raise BadInput(f"{path}: should give each of the {F} features one importance, once")
        w = np.empty(F)
        w[feature] = value
        if not np.isfinite(w).all() or (w < 0).any():
            raise BadInput(f"{path}: importances must be finite and not negative")
    if w.sum() <= 0:
        raise BadInput(f"--importance {spec}: every feature weighs 0")
    return (w * (F / w.sum())).astype(np.float32)


# --------------------------------------------------------------------------- the model's own codec


@dataclass
class ModelCodec:
    """The model's own codec for features: decode with the SAE into the model's activation
    space, pass through the model's own bottleneck where the world has one (the toy
    world's oracle SAE reads its input), encode with the SAE again, keep the same top-k."""

    sae: Any
    k: int
    round_trip: Any = None

    def __call__(self, dense: torch.Tensor) -> torch.Tensor:
        p = next(self.sae.parameters())
        with torch.no_grad():
            acts = self.sae.decode(dense.to(p.device, p.dtype))
            if self.round_trip is not None:
                acts = self.round_trip(acts)
            f = self.sae.encode(acts).float()
            values, indices = torch.topk(f, self.k, dim=-1)
            return torch.zeros_like(f).scatter_(1, indices, values.relu()).to(dense.device)


def model_codec(art, cfg: SqueezeConfig) -> ModelCodec:
    """Reopen the SAE the features were extracted with (checked by its weights' hash)."""
    handle, world = models.reopen_sae(art, cfg.sae, cfg.sae_id, cfg.device,
                                      hint="name it with --sae (and --sae-id), or skip the comparison with "
                                           "--no-faithfulness")
    trip = None
    round_trip = world.spec.load().round_trip if world is not None else None
    if round_trip is not None:
        trip = round_trip(world.model().to(cfg.device), art.attrs.get("hook"))
    stored = art.attrs.get("k")
    # The same top-k the Squeezer's input has: no more slots than the features kept.
    return ModelCodec(handle.sae, min(cfg.k, stored) if isinstance(stored, int) else cfg.k, trip)


# --------------------------------------------------------------------------- evaluation


def dense(idx: torch.Tensor, val: torch.Tensor, F: int) -> torch.Tensor:
    return torch.zeros(len(idx), F, dtype=val.dtype, device=val.device).scatter_add_(1, idx, val)


def evaluate(model, idx: torch.Tensor, val: torch.Tensor, scaled: torch.Tensor, scale: torch.Tensor,
             weight: torch.Tensor | None, codec: ModelCodec | None) -> dict[str, Any]:
    """Everything measured on the held-out rows (idx; val in the SAE's units, scaled as the
    Squeezer reads them), per feature and per neuron for instance 0 of `model`, and for the
    model's codec when given."""
    R, F, M = model.shape
    w = weight if weight is not None else torch.ones(F, device=idx.device)
    acc: dict[str, torch.Tensor] = {}

    def add(name, value):
        acc[name] = acc[name] + value if name in acc else value

    with torch.no_grad():
        for s in range(0, len(idx), CHUNK):
            i, v = idx[s:s + CHUNK], scaled[s:s + CHUNK]
            x = dense(i, v, F)
            h = model.encode(i, v)[0]
            err = (model.decode(h.unsqueeze(0))[0] - x) ** 2
            add("err", err.sum(0).double())
            add("x", x.sum(0).double())
            add("x2", (x * x).sum(0).double())
            add("fired", (x > 0).sum(0))
            add("h", h.sum(0).double())
            add("h2", (h * h).sum(0).double())
            add("h_pos", (h > 0).sum(0))
            if codec is not None:
                add("codec_err", ((codec(dense(i, val[s:s + CHUNK], F)) / scale - x) ** 2).sum(0).double())
    n = len(idx)
    out = {"n": n, "loss": float((acc["err"] * w).sum() / (n * F)),
           "mse": float(acc["err"].sum() / (n * F)),
           "per_feature_mse": acc["err"] / n,
           "per_feature_var": acc["x2"] / n - (acc["x"] / n) ** 2,
           "fired": acc["fired"],
           "neuron_mean": acc["h"] / n,
           "neuron_std": (acc["h2"] / n - (acc["h"] / n) ** 2).clamp_min(0).sqrt(),
           "neuron_active": acc["h_pos"] / n}
    total_var = float(out["per_feature_var"].sum())
    # Undefined, not infinite, where the held-out rows do not vary: written as null.
    out["fvu"] = float(acc["err"].sum() / n) / total_var if total_var > 0 else None
    if codec is not None:
        out["codec_loss"] = float((acc["codec_err"] * w).sum() / (n * F))
        out["codec_mse"] = float(acc["codec_err"].sum() / (n * F))
        out["per_feature_codec_mse"] = acc["codec_err"] / n
    return out


def held_out_losses(model, idx, scaled, weight) -> list[float]:
    """Each instance's loss on the held-out rows: picks the one to keep."""
    total = torch.zeros(model.shape[0], dtype=torch.float64)
    with torch.no_grad():
        for s in range(0, len(idx), CHUNK):
            i = idx[s:s + CHUNK]
            total += model.loss(i, scaled[s:s + CHUNK], weight).double().cpu() * len(i)
    return (total / len(idx)).tolist()


# --------------------------------------------------------------------------- training


def _finite(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


@talk.reports
def squeeze(cfg: SqueezeConfig) -> dict:
    """Train, evaluate and write `cfg.out`; returns the metrics (with `cfg.seeds`, one Squeezer
    per seed in OUT/seed-N/: stages.seeds)."""
    if cfg.seeds is not None:
        return seeds.each(cfg, squeeze, "squeezer")
    check_output(cfg.out, "squeezer")
    art = open_artifact(cfg.features, "features")
    F = art.attrs.get("d_sae")
    if not isinstance(F, int) or F < 1:
        raise BadInput(f"{art.path}: attrs.d_sae should give the number of features")
    if cfg.k > F:
        raise BadInput(f"--k {cfg.k} is larger than the number of features ({F})")
    models.check_device(cfg.device)
    if cfg.dtype != "float32" and not cfg.device.startswith("cuda"):
        # Slower than float32 on a CPU, and fatal on some (SIGILL where AMX is advertised but not enabled).
        raise BadInput(f"--dtype {cfg.dtype} is for GPUs", hint="use --dtype float32 on the CPU")
    stored_k = art.attrs.get("k")
    if isinstance(stored_k, int) and cfg.k > stored_k:
        info(f"note: the features keep {stored_k} per token; --k {cfg.k} leaves the rest of the slots empty")
    stats = feature_stats(art)
    weight_np = importance(cfg.importance, stats)
    batches = Batches(art, cfg.k, cfg.batch_size, cfg.buffer_rows, cfg.eval_rows, cfg.seed)
    steps = cfg.steps or batches.steps(cfg.epochs)
    codec = model_codec(art, cfg) if cfg.faithfulness else None

    device = torch.device(cfg.device)
    scale = torch.from_numpy(scales(cfg.rescale, stats, batches)).to(device)
    weight = None if weight_np is None else torch.from_numpy(weight_np).to(device)
    model = Squeezer(F, cfg.m, instances=cfg.restarts, tied=cfg.tied, neuron_act=cfg.neuron_act,
                     seed=cfg.seed).to(device)
    model.compute_dtype = getattr(torch, cfg.dtype)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # What a resumed run must share with the one it resumes; the schedule may change.
    run = {k: v for k, v in config.to_dict(cfg).items()
           if k not in ("steps", "epochs", "lr", "warmup", "decay", "final_lr", "checkpoint_every", "resume", "out",
                        "device", "faithfulness", "sae", "sae_id", "represented")} | {"features": art.fingerprint}
    every = max(1, steps // CURVE_POINTS)
    attrs = {"n_features": F, "n_neurons": cfg.m, "k": cfg.k, "tied": cfg.tied, "neuron_act": cfg.neuron_act,
             "rescale": cfg.rescale, "importance": cfg.importance if cfg.importance in ("uniform", "frequency")
             else "table", "hook": art.attrs.get("hook"), "sae": art.attrs.get("sae")}
    with ArtifactWriter(cfg.out, "squeezer", command="codec squeeze", params=config.to_dict(cfg), inputs=[art],
                        attrs=attrs, resume=cfg.resume, resumable=f"checkpoint/{checkpoints.FILE}") as w:
        ckpt = w.path / "checkpoint"
        state = checkpoints.load(ckpt, model, opt, run) if cfg.resume else None
        state = state or checkpoints.State()
        if cfg.resume and state.step == 0:
            info(f"note: no checkpoint in {w.path}; starting afresh")
        first, started = state.step, time.perf_counter()
        # The running mean of the loss since the last curve point rides in the checkpoint too,
        # so that a resumed run writes the very curve an uninterrupted one would.
        running = state.extra.get("running", torch.zeros(cfg.restarts, dtype=torch.float64))
        seen = int(state.extra.get("seen", torch.zeros(())).item())
        with progress("squeeze", steps, unit="steps", completed=first, per=("tokens", cfg.batch_size)) as bar:
            loud = not bar.visible  # no bar to watch (a log, a notebook): a line every tenth of the run instead
            stream = batches.stream(first)
            for step in range(first, steps):
                idx, val = next(stream)
                i = torch.from_numpy(idx).to(device).clamp_min_(0)
                v = torch.from_numpy(val).to(device)
                lr = learning_rate(cfg, step, steps)
                for group in opt.param_groups:
                    group["lr"] = lr
                losses = model.loss(i, v / scale[i], weight)
                opt.zero_grad(set_to_none=True)
                losses.sum().backward()
                now = losses.detach().double().cpu()
                if not bool(torch.isfinite(now).all()):
                    raise Diverged(step + 1, state.step or None, w.path)
                opt.step()
                model.project()
                running += now
                seen += 1
                if (step + 1) % every == 0 or step + 1 == steps:
                    state.history.append({"step": step + 1, "lr": lr, "losses": (running / seen).tolist()})
                    running.zero_()
                    seen = 0
                    bar.update(completed=step + 1, description=f"squeeze  loss {min(state.history[-1]['losses']):.4g}")
                if loud and state.history and (step + 1) * 10 // steps != step * 10 // steps:
                    rate = (step + 1 - first) / max(time.perf_counter() - started, 1e-9)
                    info(f"squeeze: step {step + 1}/{steps}  {rate:,.1f} steps/s  {rate * cfg.batch_size:,.0f} tokens/s"
                         f"  loss {min(state.history[-1]['losses']):.4g}")
                if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < steps:
                    if not _finite(model):
                        raise Diverged(step + 1, state.step or None, w.path)
                    state.step = step + 1
                    state.extra = {"running": running, "seen": torch.tensor(seen)}
                    checkpoints.save(ckpt, model, opt, state, run)
        if not _finite(model):
            raise Diverged(steps, state.step or None, w.path)
        seconds = time.perf_counter() - started
        metrics, tables, weights = report(model, batches, scale, weight, codec, stats, cfg)
        metrics |= {"steps": steps, "train_rows": batches.rows, "epochs": round(steps * cfg.batch_size / batches.rows, 3)}
        kept = metrics["instance"]
        curve = {"step": [r["step"] for r in state.history], "lr": [r["lr"] for r in state.history],
                 "loss": [r["losses"][kept] for r in state.history],
                 "loss_mean": [float(np.mean(r["losses"])) for r in state.history]}
        w.write_tensors("weights.safetensors", weights)
        w.write_table("training.parquet", curve)
        for name, table in tables.items():
            w.write_table(f"{name}.parquet", table)
        w.write_json("metrics.json", metrics)
        w.attrs.update({k: metrics[k] for k in ("loss", "mse", "fvu", "faithfulness_ratio")})
        shutil.rmtree(ckpt, ignore_errors=True)  # last: a failure above can still resume
    # Speed is reported, not stored: the artifact's bytes depend on its inputs alone.
    return metrics | {"steps_per_s": (steps - first) / max(seconds, 1e-9),
                      "tokens_per_s": (steps - first) * cfg.batch_size / max(seconds, 1e-9)}


class Diverged(CodecError):
    def __init__(self, step: int, kept: int | None, partial: Path):
        where = (f"the last good checkpoint (step {kept}) is kept in {partial}" if kept
                 else "no checkpoint had been saved yet")
        super().__init__(f"training diverged at step {step} (a NaN or infinity in the loss or weights); {where}",
                         hint="lower --lr (a resumed run may change it), or check the features for infinities")


def report(model, batches, scale, weight, codec, stats, cfg: SqueezeConfig):
    """Pick the best instance on the held-out rows and measure it: (metrics, tables, weights)."""
    device = scale.device
    idx, val = (torch.from_numpy(a).to(device) for a in batches.held_out())
    idx = idx.clamp_min_(0)
    scaled = val / scale[idx]
    losses = held_out_losses(model, idx, scaled, weight)
    best = int(np.argmin(losses))
    weights = model.weights(best)
    one = Squeezer.from_weights(weights, tied=cfg.tied, neuron_act=cfg.neuron_act).to(device)
    ev = evaluate(one, idx, val, scaled, scale, weight, codec)
    F, M = weights["W_enc"].shape
    gain = model.gain()[best].detach().cpu().numpy()
    norm = weights["W_dec"].norm(dim=0).cpu().numpy()
    count = stats["count"]
    status = np.where(count == 0, "never fired", np.where(gain >= cfg.represented, "represented", "dropped"))
    var = ev["per_feature_var"].cpu().numpy()
    mse = ev["per_feature_mse"].cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        fvu = np.where(var > 0, mse / var, np.nan)
    features = {"feature": np.arange(F, dtype=np.int32), "status": status, "frequency": stats["frequency"],
                "mean": stats["mean"], "scale": scale.cpu().numpy(), "gain": gain.astype(np.float32), "norm": norm.astype(np.float32),
                "held_out_count": ev["fired"].cpu().numpy().astype(np.int64), "mse": mse,
                "fvu": pl.Series("fvu", fvu, nan_to_null=True)}  # null: never fired in the held-out rows
    if codec is not None:
        features["codec_mse"] = ev["per_feature_codec_mse"].cpu().numpy()
    std = ev["neuron_std"].cpu().numpy()
    dead = std <= 1e-4 * max(float(std.max()), 1e-30)
    neurons = {"neuron": np.arange(M, dtype=np.int32), "mean": ev["neuron_mean"].cpu().numpy(), "std": std,
               "active": ev["neuron_active"].cpu().numpy(), "dead": dead}
    metrics = {"loss": ev["loss"], "mse": ev["mse"], "fvu": ev["fvu"],
               "model_codec_loss": ev.get("codec_loss"), "model_codec_mse": ev.get("codec_mse"),
               "faithfulness_ratio": (ev["loss"] / ev["codec_loss"] if codec is not None and ev["codec_loss"] > 0
                                      else None),
               "features": F, "represented": int((status == "represented").sum()),
               "dropped": int((status == "dropped").sum()), "never_fired": int((status == "never fired").sum()),
               "neurons": M, "dead_neurons": int(dead.sum()),
               "instance": best, "instance_losses": losses, "held_out_rows": ev["n"]}
    extra = {"scale": scale.cpu()} | ({"importance": weight.cpu()} if weight is not None else {})
    return metrics, {"features": features, "neurons": neurons}, {k: v.cpu().numpy() for k, v in
                                                                   (weights | extra).items()}
