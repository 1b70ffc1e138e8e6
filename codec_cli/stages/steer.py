"""`codec steer`: steer a model by a whole theme of SAE atoms, beside single atoms and chance.

    codec steer MODEL --themes themes/ --theme telescope --sweep 0:2:0.25 --out steering/

seeds/000 claims that a theme's population of atoms steers better than any single atom and
that naive steering breaks the model by pushing its residual norm off the training
distribution. Every claim is measured here with its baseline (docs/steer.md has each
formula):

- add: v = Σ w_i d_i over the theme's decoder directions d_i, unit-normalised, added at
  the SAE's hook as δ = s·‖x‖·v̂ per position (norm-matched) or s·median‖x‖·v̂ (global);
- clamp: the SAE's reconstruction with the theme's atoms set to s × their mean activation,
  plus the SAE's own error: x' = x + dec(a') − dec(a);
- baselines of the same norm: the theme's strongest atom, random directions, random groups
  of atoms from outside the theme;
- per strength and method: the target (the theme's top tokens' next-token probability
  mass while generating), its shift from the clean model per prompt and the SNR (mean
  shift / its spread over prompts), the cost on neutral text (KL(steered ‖ clean),
  perplexity), a coherence proxy (distinct-n, repeated 3-grams), and SNR against the
  number of atoms N.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from codec_cli import config, talk
from codec_cli.artifacts import ArtifactWriter, check_not_an_input, check_output
from codec_cli.config import SteerConfig
from codec_cli.errors import BadInput
from codec_cli.sources.theme import (Setting, Theme, batches, open_setting, planted_topic, read_texts, tokenize,
                                     world_texts)
from codec_cli.talk import info

METHODS = ("theme", "atom", "random-direction", "random-group")
"""The theme's population, its strongest atom, and the two chance baselines (add; clamp has no direction)."""


# --------------------------------------------------------------------------- interventions


@dataclass
class Intervention:
    """A forward hook at the SAE's hook point. Positions before `first` (BOS) are left alone:
    its residual is no word's, and in many models an outlier in norm."""

    kind: str
    """add or clamp."""
    strength: float
    direction: torch.Tensor | None = None
    """add: the unit vector v̂ [d]."""
    scale: float | None = None
    """add: a fixed norm (global: the median residual norm); None matches each position's norm."""
    setting: Setting | None = None
    atoms: torch.Tensor | None = None
    """clamp: the atoms set."""
    values: torch.Tensor | None = None
    """clamp: the value each is set to."""
    first: int = 1

    def __call__(self, x: torch.Tensor, hook=None) -> torch.Tensor:
        if self.kind == "add":  # the hot path of generation: as few operations as it takes
            if self.direction.shape[0] != x.shape[-1]:
                self.setting.check_width(x)
            v = self.direction if self.direction.dtype == x.dtype else self.direction.to(x.dtype)
            norm = x.norm(dim=-1, keepdim=True) if self.scale is None else self.scale
            delta = (self.strength * norm) * v
            if self.first:
                delta = delta.expand_as(x).clone()
                delta[:, :self.first] = 0
            return x + delta
        y = x[:, self.first:]
        a = self.setting.encode(y)
        clamped = a.clone()
        clamped[..., self.atoms] = self.values.to(a.dtype)
        sae = self.setting.sae
        y = y + (sae.decode(clamped) - sae.decode(a)).to(y.dtype)
        return torch.cat([x[:, :self.first], y], 1) if self.first else y


def direction(setting: Setting, atoms: np.ndarray, weights: np.ndarray) -> torch.Tensor:
    """The unit vector Σ w_i d_i over the atoms' decoder directions."""
    W = setting.decoder()[torch.as_tensor(atoms, dtype=torch.long)].double()
    v = (torch.as_tensor(weights, dtype=torch.float64)[:, None] * W).sum(0)
    n = v.norm()
    if not n > 0:
        raise BadInput("the theme's decoder directions cancel out (their weighted sum is zero)",
                       hint="try --weights uniform, or another theme")
    return (v / n).float()


def weights_of(setting: Setting, atoms: np.ndarray, how: str) -> np.ndarray:
    """Each atom's weight: its mean activation over all tokens (how often × how strongly it fires,
    so v is the theme's average write into the residual stream), or 1."""
    return setting.count[atoms] * setting.mean[atoms] if how == "mean" else np.ones(len(atoms))


# --------------------------------------------------------------------------- running the model


def generate(setting: Setting, prompts: list[torch.Tensor], new: int, iv: Intervention | None, targets: np.ndarray,
             cfg: SteerConfig) -> tuple[list[list[int]], np.ndarray]:
    """(continuation token ids per prompt, [prompts, new] target mass at each generated step):
    greedy, or Gumbel-max sampling whose noise depends only on the seed, the batch and the step,
    so every method draws the same random numbers and strength 0 gives the clean tokens."""
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

    model, device = setting.model, setting.model.cfg.device
    out: list[list[int]] = [[] for _ in prompts]
    mass = np.zeros((len(prompts), new))
    tgt = torch.as_tensor(targets, dtype=torch.long, device=device)
    hooks = model.hooks(fwd_hooks=[(setting.hook, iv)]) if iv is not None else nullcontext()
    with torch.no_grad(), hooks:
        for b, idx in enumerate(batches(prompts, cfg.batch_size)):
            toks = torch.stack([prompts[i] for i in idx]).to(device)
            cache = TransformerLensKeyValueCache.init_cache(model.cfg, device, len(idx))
            noise = torch.Generator().manual_seed(cfg.seed * 1_000_003 + b)
            if iv is not None:
                iv.first = 1
            # No padding anywhere, so every token is attended: said outright, since otherwise
            # transformer-lens infers a mask from the tokenizer's pad id, which may be BOS's.
            logits = model(toks, past_kv_cache=cache, attention_mask=torch.ones_like(toks))[:, -1]
            if iv is not None:
                iv.first = 0
            for step in range(new):
                logp = logits.float().log_softmax(-1)
                mass[idx, step] = logp[:, tgt].exp().sum(-1).cpu().numpy()
                if not cfg.greedy:
                    u = torch.rand(logp.shape, generator=noise, dtype=torch.float64).clamp_(1e-300, 1.0)
                    nxt = (logp.double().cpu() / cfg.temperature - torch.log(-torch.log(u))).argmax(-1).to(device)
                else:
                    nxt = logp.argmax(-1)
                for j, i in enumerate(idx):
                    out[i].append(int(nxt[j]))
                if step + 1 < new:
                    logits = model(nxt[:, None], past_kv_cache=cache,
                                   attention_mask=torch.ones_like(nxt[:, None]))[:, -1]
    return out, mass


def logprobs(setting: Setting, toks: torch.Tensor, iv: Intervention | None) -> torch.Tensor:
    """[B, L, V] next-token log-probabilities of a batch, with the intervention in place (or none)."""
    model = setting.model
    hooks = model.hooks(fwd_hooks=[(setting.hook, iv)]) if iv is not None else nullcontext()
    with torch.no_grad(), hooks:
        if iv is not None:
            iv.first = 1
        return model(toks.to(model.cfg.device)).float().log_softmax(-1)


def cost(setting: Setting, neutral: list[torch.Tensor], iv: Intervention | None, batch_size: int) -> dict:
    """KL(steered ‖ clean) per position and the perplexity, over the neutral texts' positions 1 …
    L−2 (position 0 is BOS, never steered; the last has no next token to score)."""
    kl_sum = ce_sum = 0.0
    n = 0
    for idx in batches(neutral, batch_size):
        toks = torch.stack([neutral[i] for i in idx])
        if toks.shape[1] < 3:
            continue
        s = logprobs(setting, toks, iv)[:, 1:-1]
        c = logprobs(setting, toks, None)[:, 1:-1] if iv is not None else s
        kl_sum += float((s.exp() * (s - c)).sum(-1).clamp_min(0).double().sum())
        ce_sum += float(-s.gather(-1, toks[:, 2:, None].to(s.device)).double().sum())
        n += s.shape[0] * s.shape[1]
    if n == 0:
        raise BadInput("the neutral texts are too short: each needs at least 2 tokens after BOS",
                       hint="give longer --neutral texts")
    return {"kl": kl_sum / n, "perplexity": math.exp(ce_sum / n)}


def median_norm(setting: Setting, neutral: list[torch.Tensor], batch_size: int) -> float:
    """The median residual norm at the hook over the neutral texts (BOS left out): the fixed
    scale of global steering."""
    norms = []

    def keep(x, hook):
        setting.check_width(x)
        norms.append(x[:, 1:].norm(dim=-1).flatten().double().cpu())

    with torch.no_grad(), setting.model.hooks(fwd_hooks=[(setting.hook, keep)]):
        for idx in batches(neutral, batch_size):
            setting.model(torch.stack([neutral[i] for i in idx]).to(setting.model.cfg.device))
    return float(torch.cat(norms).median())


# --------------------------------------------------------------------------- metrics


def coherence(tokens: list[int]) -> dict:
    """distinct-1 and distinct-2 (unique n-grams / n-grams) and the share of 3-grams already
    seen earlier in the same continuation."""
    def grams(n):
        return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]

    out = {}
    for n in (1, 2):
        g = grams(n)
        out[f"distinct_{n}"] = len(set(g)) / len(g) if g else 1.0
    seen, repeats, g3 = set(), 0, grams(3)
    for g in g3:
        repeats += g in seen
        seen.add(g)
    out["repeat_3"] = repeats / len(g3) if g3 else 0.0
    return out


def record(method: str, strength: float, draw: int, n_atoms: int, part: str, gen, mass, clean_mass, targets,
           spent: dict) -> dict:
    """One run's metrics (a row of metrics.parquet)."""
    per_prompt = mass.mean(1)
    shift = per_prompt - clean_mass.mean(1)
    sd = float(shift.std(ddof=1)) if len(shift) > 1 else math.nan
    target_set = set(int(t) for t in targets)
    hits = np.mean([np.mean([t in target_set for t in g]) for g in gen])
    coh = [coherence(g) for g in gen]
    return {"part": part, "method": method, "strength": float(strength), "draw": draw, "n_atoms": n_atoms,
            "target": float(per_prompt.mean()), "target_clean": float(clean_mass.mean()),
            "shift": float(shift.mean()), "shift_sd": sd,
            "snr": float(shift.mean() / sd) if sd > 0 else math.nan,
            "hits": float(hits), **spent,
            **{k: float(np.mean([c[k] for c in coh])) for k in ("distinct_1", "distinct_2", "repeat_3")}}


def matched(metrics: pl.DataFrame, baseline: str, sign: float) -> list[dict]:
    """The theme's effect beside the baseline's at the same cost: the most the baseline moves the
    target the intended way (sign × shift: up for add, down for clamp) at a KL no larger than the
    theme's, along its curve through (0, 0), linear between its strengths, its draws averaged."""
    main = metrics.filter(pl.col("part") == "strength")
    theme = main.filter(pl.col("method") == "theme").sort("strength")
    base = main.filter(pl.col("method") == baseline).group_by("strength").agg(pl.col("kl").mean(),
                                                                             pl.col("shift").mean()).sort("kl")
    if base.is_empty():
        return []
    kl = np.concatenate([[0.0], base["kl"].to_numpy()])
    best = np.maximum.accumulate(np.concatenate([[0.0], sign * base["shift"].to_numpy()]))
    rows = []
    for r in theme.iter_rows(named=True):
        b = float(np.interp(r["kl"], kl, best))
        rows.append({"strength": r["strength"], "kl": r["kl"], "theme_effect": sign * r["shift"],
                     "baseline_effect": b, "ratio": sign * r["shift"] / b if b > 0 else None})
    return rows


def sizes(n: int) -> list[int]:
    """N for SNR against the number of atoms: 1, 2, 4, … and the whole theme."""
    out = [2 ** i for i in range(int(math.log2(n)) + 1) if 2 ** i < n] if n > 1 else []
    return out + [n]


def slope(ns: list[int], snr: list[float]) -> float | None:
    """The least-squares slope of log SNR against log N (1/2 for SNR ∝ √N)."""
    ok = [(math.log(n), math.log(s)) for n, s in zip(ns, snr) if s is not None and s > 0 and math.isfinite(s)]
    if len(ok) < 2:
        return None
    x, y = np.array(ok).T
    return float(np.polyfit(x, y, 1)[0])


# --------------------------------------------------------------------------- the stage


def inputs(setting: Setting, theme: Theme, cfg: SteerConfig) -> tuple[list[torch.Tensor], list[torch.Tensor], dict]:
    """(prompts, neutral texts, where they came from). A world's own prompts are documents of
    other topics when adding (there is somewhere to steer to) and of the theme's own topic when
    clamping (there is something to take away)."""
    about = {}
    if cfg.prompts:
        prompts = tokenize(setting.model, read_texts(cfg.prompts, cfg.column, cfg.n_prompts), "prompts")
        about["prompts"] = [str(p) for p in cfg.prompts]
    else:
        docs, topics = world_texts(setting, 16 * cfg.n_prompts, "the prompts, one per line",
                                   "--prompts")
        topic = planted_topic(setting, theme)
        keep = [i for i, t in enumerate(topics) if topic is None or (t == topic) == (cfg.method == "clamp")]
        prompts = [docs[i][:cfg.prompt_tokens] for i in keep[:cfg.n_prompts]]
        about["prompts"] = (f"{len(prompts)} world documents" + ("" if topic is None else
                            f" {'on' if cfg.method == 'clamp' else 'off'} the planted topic {topic!r}")
                            + f", their first {cfg.prompt_tokens} tokens")
        about["planted_topic"] = topic
    if cfg.neutral:
        neutral = tokenize(setting.model, read_texts(cfg.neutral, cfg.column, cfg.n_neutral), "neutral texts")
        about["neutral"] = [str(p) for p in cfg.neutral]
    else:
        docs, _ = world_texts(setting, 16 * cfg.n_prompts + cfg.n_neutral, "neutral held-out text, one per line",
                              "--neutral")
        neutral = docs[16 * cfg.n_prompts:]  # never a prompt's document
        about["neutral"] = f"{len(neutral)} world documents (every topic)"
    ctx = setting.model.cfg.n_ctx
    longest = max(len(p) for p in prompts)
    if longest + cfg.new_tokens > ctx:
        raise BadInput(f"a prompt of {longest} tokens and {cfg.new_tokens} new ones exceed the model's context "
                       f"of {ctx}", hint="lower --new-tokens or shorten the prompts")
    return prompts, neutral, about


@talk.reports
def steer(cfg: SteerConfig) -> dict:
    """Steer the model by a theme, beside its baselines; write the steering artifact at `cfg.out`."""
    check_output(cfg.out, "steering")
    check_not_an_input(cfg.out, [cfg.themes, *cfg.prompts, *cfg.neutral])
    setting = open_setting(cfg.model, cfg.themes, cfg.sae, cfg.sae_id, cfg.device)
    theme = setting.theme(cfg.theme)
    prompts, neutral, about = inputs(setting, theme, cfg)
    pool = setting.outside(theme)
    if len(pool) < theme.size:
        raise BadInput(f"theme {theme.number} has {theme.size} atoms and only {len(pool)} others fire: too few "
                       f"for random groups of its size", hint="choose a smaller theme")
    scale = median_norm(setting, neutral, cfg.batch_size) if cfg.method == "add" and cfg.norm == "global" else None
    d = setting.sae.cfg.d_in
    rng = np.random.default_rng(cfg.seed)
    random_dirs = [torch.randn(d, generator=torch.Generator().manual_seed(cfg.seed * 7919 + j), dtype=torch.float64)
                   for j in range(cfg.draws)]
    random_dirs = [(v / v.norm()).float() for v in random_dirs]
    groups = {n: [np.sort(rng.choice(pool, n, replace=False)) for _ in range(cfg.draws)]
              for n in sorted(set(sizes(theme.size)))}

    def make(atoms: np.ndarray | None, strength: float, vec: torch.Tensor | None = None) -> Intervention:
        if cfg.method == "add":
            v = vec if vec is not None else direction(setting, atoms, weights_of(setting, atoms, cfg.weights))
            return Intervention("add", strength, direction=v.to(setting.model.cfg.device), scale=scale,
                                setting=setting)
        return Intervention("clamp", strength, setting=setting, atoms=torch.as_tensor(atoms, dtype=torch.long),
                            values=torch.as_tensor(strength * setting.mean[atoms], dtype=torch.float32))

    def arms(part: str, strength: float, n: int):
        """(method, draw, intervention): the theme's n strongest atoms and their baselines; against
        N, only random groups (a single atom is N = 1 and a random direction has no N)."""
        yield "theme", 0, make(theme.atoms[:n], strength)
        if part == "strength":
            yield "atom", 0, make(theme.atoms[:1], strength)
        if cfg.method == "add" and part == "strength":
            for j, v in enumerate(random_dirs):
                yield "random-direction", j, make(None, strength, v)
        for j, g in enumerate(groups[n]):
            yield "random-group", j, make(g, strength)

    info(f"steer: theme {theme.number} ({theme.label}, {theme.size} atoms) by {cfg.method} at {setting.hook}; "
         f"{len(prompts)} prompts, {len(neutral)} neutral texts")
    clean_gen, clean_mass = generate(setting, prompts, cfg.new_tokens, None, theme.targets, cfg)
    clean_cost = cost(setting, neutral, None, cfg.batch_size)
    levels = cfg.levels
    snr_at = cfg.snr_strength if cfg.snr_strength is not None else levels[-1]
    plan = [("strength", s, theme.size) for s in levels] + [("atoms", snr_at, n) for n in sizes(theme.size)]
    rows, gens = [], []
    tok = setting.model.tokenizer

    def text(ids) -> str:
        return tok.decode(ids) if tok is not None else " ".join(map(str, ids))

    for i, g in enumerate(clean_gen):
        gens.append({"method": "clean", "strength": None, "draw": 0, "prompt": i, "prompt_text": text(prompts[i][1:]),
                     "continuation": text(g), "target": float(clean_mass[i].mean()), "same_as_clean": True})
    runs = sum(len(list(arms(*step))) for step in plan)
    with talk.progress("steer", runs, unit="runs") as bar:
        for part, strength, n in plan:
            for method, draw, iv in arms(part, strength, n):
                gen, mass = generate(setting, prompts, cfg.new_tokens, iv, theme.targets, cfg)
                spent = cost(setting, neutral, iv, cfg.batch_size)
                rows.append(record(method, strength, draw, n if method != "atom" else 1, part, gen, mass, clean_mass,
                                   theme.targets, spent))
                if part == "strength" and draw == 0:
                    gens += [{"method": method, "strength": float(strength), "draw": 0, "prompt": i,
                              "prompt_text": text(prompts[i][1:]), "continuation": text(g),
                              "target": float(mass[i].mean()), "same_as_clean": g == clean_gen[i]}
                             for i, g in enumerate(gen)]
                bar.advance()
    metrics = pl.DataFrame(rows)
    generations = pl.DataFrame(gens, schema_overrides={"strength": pl.Float64})
    summary = summarize(metrics, generations, theme, setting, cfg, clean_cost, clean_mass, about, scale, snr_at)
    with ArtifactWriter(cfg.out, "steering", command="codec steer", params=config.to_dict(cfg),
                        inputs=[setting.themes, setting.features],
                        attrs={"theme": theme.number, "label": theme.label, "method": cfg.method, "hook": setting.hook,
                               "sae": setting.features.attrs.get("sae")}) as w:
        w.write_table("generations.parquet", generations)
        w.write_table("metrics.parquet", metrics)
        w.write_json("summary.json", summary)
        w.write_figure("steering.png", figure(metrics, summary))
    info(f"steer: {runs} runs -> {cfg.out}")
    return summary


def summarize(metrics: pl.DataFrame, generations: pl.DataFrame, theme: Theme, setting: Setting, cfg: SteerConfig,
              clean_cost: dict, clean_mass: np.ndarray, about: dict, scale: float | None, snr_at: float) -> dict:
    main = metrics.filter(pl.col("part") == "strength")

    def curve(method: str) -> list[dict]:
        m = main.filter(pl.col("method") == method).group_by("strength").agg(
            pl.col("target", "shift", "snr", "kl", "perplexity", "distinct_2").mean()).sort("strength")
        return m.to_dicts()

    by_n = metrics.filter(pl.col("part") == "atoms")
    sign = 1.0 if cfg.method == "add" else -1.0
    snr = {}
    for method in ("theme", "random-group"):
        m = by_n.filter(pl.col("method") == method).group_by("n_atoms").agg(pl.col("snr").mean()).sort("n_atoms")
        snr[method] = {"n": m["n_atoms"].to_list(), "snr": m["snr"].to_list(),
                       # of the intended effect's SNR: a clamp that works lowers the target
                       "slope": slope(m["n_atoms"].to_list(), [None if v is None else sign * v for v in m["snr"]])}
    zero = None
    if cfg.method == "add" and 0.0 in cfg.levels:
        z = main.filter((pl.col("method") == "theme") & (pl.col("strength") == 0.0)).row(0, named=True)
        same = generations.filter((pl.col("method") == "theme") & (pl.col("strength") == 0.0))["same_as_clean"].all()
        zero = {"kl": z["kl"], "same_tokens": bool(same)}
    baselines = ["atom", "random-group"] + (["random-direction"] if cfg.method == "add" else [])
    return {
        "theme": {"number": theme.number, "label": theme.label, "atoms": theme.size,
                  "strongest_atom": int(theme.atoms[0]), "targets": theme.words},
        "method": cfg.method, "norm": cfg.norm if cfg.method == "add" else None,
        "weights": cfg.weights if cfg.method == "add" else None, "global_scale": scale,
        "hook": setting.hook, "inputs": about, "strengths": cfg.levels, "draws": cfg.draws,
        "decoding": "greedy" if cfg.greedy else f"sampled at temperature {cfg.temperature}",
        "clean": {"target": float(clean_mass.mean()), **clean_cost},
        "curves": {m: curve(m) for m in ("theme", *baselines)},
        "matched_kl": {b: matched(metrics, b, sign) for b in baselines},
        "snr_vs_atoms": {"strength": snr_at, **snr},
        "strength_zero": zero,
        "baseline": "the theme's strongest atom, random unit directions and random groups of its size from the "
                    "atoms outside it, each at the same strength (the same norm for add)",
    }


# --------------------------------------------------------------------------- the picture


COLOURS = {"theme": "tab:blue", "atom": "tab:orange", "random-direction": "0.5", "random-group": "tab:green"}


def figure(metrics: pl.DataFrame, summary: dict):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.6), layout="constrained")
    a, b, c = fig.subplots(1, 3)
    clean = summary["clean"]["target"]
    for method, rows in summary["curves"].items():
        if not rows:
            continue
        s = [r["strength"] for r in rows]
        t = [r["target"] for r in rows]
        kl = [r["kl"] for r in rows]
        a.plot(s, t, "o-", color=COLOURS[method], label=method, ms=3)
        b.plot(kl, t, "o-", color=COLOURS[method], label=method, ms=3)
    for ax in (a, b):
        ax.axhline(clean, color="k", lw=0.8, ls=":", label="clean model")
        ax.set_ylabel("target: theme tokens' next-token mass")
    a.set_xlabel(f"strength s ({summary['method']}{', ' + summary['norm'] if summary['norm'] else ''})")
    a.set_title(f"theme {summary['theme']['number']}: {summary['theme']['label']}")
    b.set_xlabel("cost: KL(steered ‖ clean) on neutral text, nats/token")
    b.set_xscale("symlog", linthresh=1e-3)
    b.set_xlim(left=0)
    b.set_title("the frontier: target against cost")
    a.legend(frameon=False, fontsize=8)
    snr = summary["snr_vs_atoms"]
    for method in ("theme", "random-group"):
        n, v = snr[method]["n"], snr[method]["snr"]
        ok = [(x, y) for x, y in zip(n, v) if y is not None and math.isfinite(y)]
        if ok:
            slope_ = snr[method]["slope"]
            c.plot(*zip(*ok), "o-", color=COLOURS[method],
                   label=f"{method}" + (f" (slope {slope_:.2f})" if slope_ is not None else ""))
    n, v = snr["theme"]["n"], snr["theme"]["snr"]
    if n and v and v[0] is not None and v[0] > 0:
        ref = np.array(n, dtype=float)
        c.plot(ref, v[0] * np.sqrt(ref / ref[0]), "k:", lw=0.8, label="∝ √N from N = 1")
    c.set_xscale("log", base=2)
    c.set_xlabel("N: the theme's strongest atoms combined")
    c.set_ylabel("SNR: mean target shift / its s.d. over prompts")
    c.set_title(f"SNR against N at s = {snr['strength']:g}")
    c.legend(frameon=False, fontsize=8)
    return fig
