"""`codec sae train` as a library function: an SAE trained on a model's activations at one
hook, written as a sae-lens directory that is also a codec artifact (docs/sae.md)."""

from __future__ import annotations

import shutil

from codec_cli import config, talk
from codec_cli.artifacts import ArtifactWriter, check_output
from codec_cli.config import SAERunConfig, SAETrainConfig
from codec_cli.errors import BadInput
from codec_cli.nn.sae import save, train_on_source, width
from codec_cli.stages import seeds
from codec_cli.sources import models


@talk.reports
def train_sae(cfg: SAERunConfig) -> dict:
    """Train into `cfg.out`, resumably; returns the SAE's metrics and where it went (with
    `cfg.seeds`, one SAE per seed in OUT/seed-N/: stages.seeds)."""
    if cfg.seeds is not None:
        return seeds.each(cfg, train_sae, "sae")
    check_output(cfg.out, "sae")
    src = models.load_source(cfg.source, cfg.corpus, cfg.column, cfg.context)
    hook = cfg.hook or src.default_hook
    if hook is None:
        raise BadInput("no hook given, and the source has no default one", hint="e.g. hook='blocks.0.hook_resid_post'")
    train_cfg = SAETrainConfig(**{k: getattr(cfg, k) for k in SAETrainConfig.__dataclass_fields__})
    d_in = models.activations(src, hook, 0, 1).shape[-1]  # a bad hook fails here, before training
    width(train_cfg, d_in)
    with ArtifactWriter(cfg.out, "sae", command="codec sae train", params=config.to_dict(cfg),
                        resume=cfg.resume, resumable="checkpoint/state.safetensors") as w:
        sae, history, metrics = train_on_source(train_cfg, src, hook, checkpoint=w.path / "checkpoint",
                                                context=cfg.context)
        save(sae, w.path)
        w.write_json("metrics.json", metrics)
        w.write_table("training.parquet", {k: [row.get(k) for row in history] for k in history[0]})
        w.attrs.update(hook=hook, model=src.name, d_in=int(d_in), d_sae=metrics["d_sae"],
                       architecture=cfg.architecture)
        shutil.rmtree(w.path / "checkpoint", ignore_errors=True)  # last: a failure above can still resume
    return {"out": str(cfg.out), **metrics}
