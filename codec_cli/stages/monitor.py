"""`codec monitor`: watch a model for whole themes, a guardrail read from its SAE atoms.

    codec monitor MODEL --themes themes/ --theme telescope [--texts on.txt --neutral off.txt] --out monitoring/

seeds/000 reports 98.2 % detection with near-zero false positives for a theme's population
of atoms. Measured here beside single atoms and chance (docs/steer.md has each formula):

- a token's score from the theme's atoms' activations at the SAE's hook: their sum, their
  largest, or their share of all atoms' activation; a text's score is its tokens' mean (or
  largest), BOS left out;
- a threshold calibrated on one half of the neutral texts to a chosen false-positive rate,
  the rate measured on the other half, and the detection rate on the theme's texts;
- AUROC (theme texts against the held-out neutral half) for the theme, for each of its atoms
  alone, and for random groups of its size from outside it, all scored by the same rule.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import torch

from codec_cli import config, talk
from codec_cli.artifacts import ArtifactWriter, check_not_an_input, check_output
from codec_cli.config import MonitorConfig
from codec_cli.errors import BadInput
from codec_cli.sources.models import stop_layer
from codec_cli.sources.theme import (Setting, Theme, batches, open_setting, planted_topic, read_texts, tokenize,
                                     world_texts)
from codec_cli.talk import info


def token_scores(a: torch.Tensor, groups: list[torch.Tensor], rule: str) -> torch.Tensor:
    """[G, B, L] each group's score per token from activations a [B, L, F]: the group's summed
    activation, its largest, or its share of all atoms' activation (0 where none fires)."""
    out = []
    total = a.sum(-1) if rule == "share" else None
    for g in groups:
        x = a[..., g]
        if rule == "max":
            out.append(x.max(-1).values)
        else:
            s = x.sum(-1)
            out.append(torch.where(total > 0, s / total.clamp_min(1e-30), 0.0) if rule == "share" else s)
    return torch.stack(out)


def scores(setting: Setting, texts: list[torch.Tensor], groups: list[torch.Tensor], cfg: MonitorConfig):
    """([G, texts] pooled scores, per text a [G, L-1] array of token scores), BOS left out."""
    pooled = np.zeros((len(groups), len(texts)))
    per_token: list[np.ndarray | None] = [None] * len(texts)
    acts = {}

    def keep(x, hook):
        acts["x"] = x

    model = setting.model
    with torch.no_grad(), model.hooks(fwd_hooks=[(setting.hook, keep)]):
        for idx in batches(texts, cfg.batch_size):
            toks = torch.stack([texts[i] for i in idx]).to(model.cfg.device)
            if toks.shape[1] < 2:
                continue
            model(toks, stop_at_layer=stop_layer(setting.hook))  # no block after the hook's
            s = token_scores(setting.encode(acts["x"][:, 1:]).float(), groups, cfg.score)
            p = s.mean(-1) if cfg.pool == "mean" else s.max(-1).values
            pooled[:, idx] = p.double().cpu().numpy()
            for j, i in enumerate(idx):
                per_token[i] = s[:, j].cpu().numpy()
    return pooled, per_token


def threshold(calibration: np.ndarray, fpr: float) -> float:
    """The score above which at most fpr of the calibration texts lie: the k-th largest, k = ⌊fpr·n⌋ + 1."""
    ranked = np.sort(calibration)[::-1]
    return float(ranked[min(int(math.floor(fpr * len(ranked))), len(ranked) - 1)])


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a theme text scores above a neutral one), ties counted half (Mann–Whitney)."""
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([pos, neg]))
    return float((r[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def texts_for(setting: Setting, theme: Theme, cfg: MonitorConfig, docs):
    """(theme texts, neutral texts, what they are) for one theme: the files, or the world's
    documents on the theme's planted topic and off it."""
    if cfg.texts:
        return docs["texts"], docs["neutral"], {"texts": [str(p) for p in cfg.texts],
                                                "neutral": [str(p) for p in cfg.neutral]}
    topic = planted_topic(setting, theme)
    if topic is None:
        raise BadInput(f"theme {theme.number} ({theme.label}) is no planted topic of the world, so its texts "
                       f"are unknown", hint="give --texts on the theme and --neutral texts off it")
    on = [i for i, t in enumerate(docs["topics"]) if t == topic]
    off = [i for i, t in enumerate(docs["topics"]) if t != topic]
    return on, off, {"texts": f"{len(on)} world documents on the planted topic {topic!r}",
                     "neutral": f"{len(off)} world documents on other topics", "planted_topic": topic}


@talk.reports
def monitor(cfg: MonitorConfig) -> dict:
    """Score texts for each theme, calibrate, and write the monitoring artifact at `cfg.out`."""
    check_output(cfg.out, "monitoring")
    check_not_an_input(cfg.out, [cfg.themes, *cfg.texts, *cfg.neutral])
    if bool(cfg.texts) != bool(cfg.neutral):
        raise BadInput("--texts and --neutral go together: the texts to detect and the texts that must not trip "
                       "the monitor", hint="give both, or neither for a world's own documents")
    setting = open_setting(cfg.model, cfg.themes, cfg.sae, cfg.sae_id, cfg.device)
    themes = [setting.theme(t) for t in cfg.theme]
    if len({t.number for t in themes}) < len(themes):
        raise BadInput("a theme is named twice", hint="name each theme once")
    if cfg.texts:
        on = tokenize(setting.model, raw_on := read_texts(cfg.texts, cfg.column, cfg.n_texts), "texts")
        off = tokenize(setting.model, raw_off := read_texts(cfg.neutral, cfg.column, cfg.n_texts), "neutral texts")
        corpus, raw = on + off, raw_on + raw_off
        docs = {"texts": list(range(len(on))), "neutral": list(range(len(on), len(corpus)))}
    else:
        corpus, topics = world_texts(setting, cfg.n_texts, "texts on the theme, one per line", "--texts")
        raw = [None] * len(corpus)
        docs = {"topics": topics}
    rng = np.random.default_rng(cfg.seed)
    groups, owners = [], []
    for theme in themes:
        pool = setting.outside(theme)
        if len(pool) < theme.size:
            raise BadInput(f"theme {theme.number} has {theme.size} atoms and only {len(pool)} others fire: too few "
                           f"for random groups of its size", hint="choose a smaller theme")
        sets = [theme.atoms] + [np.array([a]) for a in theme.atoms] + \
            [np.sort(rng.choice(pool, theme.size, replace=False)) for _ in range(cfg.draws)]
        groups += [torch.as_tensor(g, dtype=torch.long) for g in sets]
        owners.append(len(sets))
    info(f"monitor: {len(themes)} theme(s) at {setting.hook}, {len(corpus)} texts, score {cfg.score}, pool {cfg.pool}")
    pooled, per_token = scores(setting, corpus, groups, cfg)
    results, sets, rows, token_rows, start = [], [], [], [], 0
    tok = setting.model.tokenizer
    for theme, n in zip(themes, owners):
        s = pooled[start:start + n]
        pos, neg, about = texts_for(setting, theme, cfg, docs)
        if len(neg) < 4 or not pos:
            raise BadInput(f"theme {theme.number}: {len(pos)} theme texts and {len(neg)} neutral ones; the monitor "
                           "needs at least one and four", hint="give more texts (--n-texts, or the files)")
        neg = list(np.array(neg)[rng.permutation(len(neg))])
        cal, ev = sorted(neg[: len(neg) // 2]), sorted(neg[len(neg) // 2:])
        results.append(measure(theme, s, pos, cal, ev, cfg, about))
        sets.append({"pos": pos, "ev": ev})
        t = results[-1]["threshold"]
        role = {**{i: "theme" for i in pos}, **{i: "calibration" for i in cal}, **{i: "evaluation" for i in ev}}
        for i in sorted(role):
            rows.append({"theme": theme.number, "text": i, "set": role[i], "score": float(s[0, i]),
                         "flagged": bool(s[0, i] > t), "text_preview": (raw[i] or _decode(tok, corpus[i][1:]))[:200]})
            ids = corpus[i][1:].tolist()
            token_rows += [{"theme": theme.number, "text": i, "position": p + 1, "token_id": ids[p],
                            "score": float(per_token[i][start, p])} for p in range(len(ids))]
        start += n
    summary = {"hook": setting.hook, "score": cfg.score, "pool": cfg.pool, "fpr_target": cfg.fpr,
               "texts": len(corpus), "themes": results,
               "baseline": f"each of the theme's atoms alone, and {cfg.draws} random groups of its size from the atoms "
                           "outside it, scored by the same rule"}
    with ArtifactWriter(cfg.out, "monitoring", command="codec monitor", params=config.to_dict(cfg),
                        inputs=[setting.themes, setting.features],
                        attrs={"themes": [t.number for t in themes], "hook": setting.hook,
                               "sae": setting.features.attrs.get("sae")}) as w:
        w.write_table("texts.parquet", pl.DataFrame(rows))
        w.write_table("tokens.parquet", pl.DataFrame(token_rows, schema={"theme": pl.Int64, "text": pl.Int64,
                                                                        "position": pl.Int64, "token_id": pl.Int64,
                                                                        "score": pl.Float64}))
        w.write_json("summary.json", summary)
        w.write_figure("roc.png", figure(pooled, owners, results, sets))
    aucs = ", ".join(f"{r['auroc']:.3f}" for r in results)
    info(f"monitor: AUROC {aucs} -> {cfg.out}")
    return summary


def _decode(tok, ids) -> str:
    return tok.decode(ids.tolist()) if tok is not None else " ".join(map(str, ids.tolist()))


def measure(theme: Theme, s: np.ndarray, pos: list[int], cal: list[int], ev: list[int], cfg: MonitorConfig,
            about: dict) -> dict:
    """One theme's detection numbers. s: [1 + atoms + draws, texts] pooled scores (the theme,
    each atom alone, the random groups)."""
    t = threshold(s[0, cal], cfg.fpr)
    aucs = [auroc(s[j, pos], s[j, ev]) for j in range(len(s))]
    single = aucs[1:1 + theme.size]
    chance = np.array(aucs[1 + theme.size:])
    best = int(np.argmax(single))
    return {"theme": theme.number, "label": theme.label, "atoms": theme.size, **about,
            "theme_texts": len(pos), "neutral_calibration": len(cal), "neutral_evaluation": len(ev),
            "threshold": t, "detection_rate": float((s[0, pos] > t).mean()),
            "false_positive_rate": float((s[0, ev] > t).mean()),
            "false_positive_rate_calibration": float((s[0, cal] > t).mean()),
            "auroc": aucs[0],
            "single_atoms": {"best": {"atom": int(theme.atoms[best]), "index": best, "auroc": single[best]},
                             "strongest": {"atom": int(theme.atoms[0]), "auroc": single[0]},
                             "mean_auroc": float(np.mean(single))},
            "random_groups": {"mean_auroc": float(chance.mean()), "max_auroc": float(chance.max()),
                              "p": float((1 + (chance >= aucs[0]).sum()) / (1 + len(chance)))}}


def figure(pooled: np.ndarray, owners: list[int], results: list[dict], sets_: list[dict]):
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_curve

    n = len(results)
    cols = min(n, 4)
    rows_ = math.ceil(n / cols)
    fig = Figure(figsize=(4.2 * cols, 4.0 * rows_), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows_, cols)).ravel()
    start = 0
    for ax, r, k, sets in zip(axes, results, owners, sets_):
        s = pooled[start:start + k]
        y = np.r_[np.ones(len(sets["pos"])), np.zeros(len(sets["ev"]))]

        def curve(row, **kw):
            fpr, tpr, _ = roc_curve(y, np.r_[s[row, sets["pos"]], s[row, sets["ev"]]])
            ax.plot(fpr, tpr, **kw)

        for j in range(1 + r["atoms"], k):
            curve(j, color="0.75", lw=0.7, label="random groups" if j == 1 + r["atoms"] else None)
        best = r["single_atoms"]["best"]
        curve(1 + best["index"], color="tab:orange", label=f"best single atom ({best['auroc']:.3f})")
        curve(0, color="tab:blue", lw=2, label=f"theme ({r['auroc']:.3f})")
        ax.plot([r["false_positive_rate"]], [r["detection_rate"]], "o", color="tab:red",
                label=f"threshold: {r['detection_rate']:.0%} found, {r['false_positive_rate']:.1%} false")
        ax.plot([0, 1], [0, 1], "k:", lw=0.6)
        ax.set_title(f"theme {r['theme']}: {r['label']}", fontsize=9)
        ax.set_xlabel("false-positive rate (held-out neutral texts)")
        ax.set_ylabel("detection rate")
        ax.legend(frameon=False, fontsize=7, loc="lower right")
        start += k
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig
