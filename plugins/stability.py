"""stability: which latents converge across seeds, and are they the Fourier ones? (docs/analyses.md)

seeds/003 found SAEs of different seeds on the modadd model sharing few latents (PW-MCC about
0.30) and asked what features *do* converge across seeds. This analysis reads a comparison of
dictionaries (`codec compare dictionaries modadd:mlp modadd:mlp-s1 modadd:mlp-s2`): each latent
of the first dictionary has a mean matched cosine to the others and is found (matched above the
comparison's threshold) by some of them. A latent is **stable** when its mean matched
cosine reaches the comparison's threshold (0.7 by default): the other seeds' SAEs hold its
decoder direction, on average, as closely as "shared" asks of one pair. Beside it, each
latent's Fourier overlap over the grid of inputs (the fourier analysis's rule) and whether
its best frequency is one of the model's key ones, so that:

- the stable latents' overlap and key-frequency share against the unstable ones';
- chance: the same difference with the stable label shuffled among the live latents (a
  permutation p-value), and the rank correlation of mean cosine with overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

from codec_cli.errors import BadInput
from codec_cli.plugin_api import Analysis, Context, Headline, NotApplicable, Result, Section
from codec_cli.stages.html import short as g
from codec_plugins.packing import refuse_unless


@dataclass(frozen=True)
class Params:
    draws: int = 1000
    """Shuffles of the stable label behind the p-value (at least 1/(draws + 1))."""
    seed: int = 0
    """Seed of the shuffles."""

    def __post_init__(self) -> None:
        refuse_unless(self.draws >= 1, "stability", "draws", self.draws, "the p-value needs at least 1 shuffle")


def first_sae(comparison, world):
    """The SAE that the comparison's first dictionary is (WORLD:NAME, or an SAE directory)."""
    from pathlib import Path

    from codec_cli.sources.models import open_sae

    spec = str(comparison.manifest["params"]["inputs"][0])
    head, _, name = spec.rpartition(":")
    if head and name in world.saes:
        return world.sae(name).eval(), spec
    if Path(spec).is_dir():
        return open_sae(spec).sae, spec
    raise BadInput(f"{comparison.path}: its first dictionary {spec!r} is no SAE of {world.path}",
                   hint="compare the world's SAEs: codec compare dictionaries modadd:mlp modadd:mlp-s1 modadd:mlp-s2")


class Stability(Analysis):
    name = "stability"
    api_version = 1
    requires = ("comparison", "world")
    Params = Params

    def report(self, art) -> Section:
        s = art.json("summary.json")
        shuffled = s.get("baseline") or "the stable label shuffled among the live latents"
        return Section(
            question="stability",
            answer=f"{s.get('stable')} of {s.get('live')} live latents of {s.get('dictionary')} are found by all "
                   f"{s.get('dictionaries')}; their Fourier overlap is {g(s.get('overlap_stable'))} against "
                   f"{g(s.get('overlap_unstable'))} for the others (gap {g(s.get('overlap_gap'))}, shuffled "
                   f"{g(s.get('overlap_gap_chance'))}, p {g(s.get('p'))})",
            headline=[Headline("stable latents", s.get("stable")), Headline("live latents", s.get("live")),
                      Headline("overlap gap (stable − unstable)", s.get("overlap_gap"), s.get("overlap_gap_chance"),
                               shuffled),
                      Headline("p", s.get("p")),
                      Headline("stable: share on a key frequency", s.get("on_key_stable"), s.get("on_key_unstable"),
                               "the unstable latents"),
                      Headline("Spearman: matched cosine vs overlap", s.get("spearman_cosine_overlap"), 0.0,
                               "no relation")],
            text="Which latents converge across seeds, and are they the Fourier ones? docs/analyses.md.",
            tables=["latents.parquet"])

    def run(self, ctx: Context) -> Result:
        import numpy as np
        import polars as pl
        import torch
        from scipy.stats import spearmanr

        from codec_cli.worlds import World
        from codec_cli.worlds import modadd
        from codec_plugins.fourier import frequency_shares

        comparison, world = ctx.inputs["comparison"], World(ctx.inputs["world"])
        if comparison.manifest["params"].get("inputs") is None or "latents.parquet" not in comparison.files():
            raise BadInput(f"{comparison.path} is no comparison of dictionaries",
                           hint="codec compare dictionaries modadd:mlp modadd:mlp-s1 modadd:mlp-s2")
        if world.name != "modadd":
            raise NotApplicable(f"stability relates latents to Fourier features of the modadd world; {world.path} "
                                f"is the {world.name} world")
        sae, spec = first_sae(comparison, world)
        dictionaries = len(comparison.manifest["params"]["inputs"])
        table = comparison.table("latents.parquet").filter(pl.col("input") == spec).sort("latent")
        if len(table) != int(sae.cfg.d_sae):
            raise BadInput(f"{comparison.path} lists {len(table)} latents of {spec}; the SAE has {sae.cfg.d_sae}")
        _, cfg = world.config()
        p = cfg.p
        keys = [int(k) for k in ctx.inputs["world"].json("truth/key_frequencies.json")["key_frequencies"]]
        model = world.model()
        with torch.no_grad():
            acts = sae.encode(modadd.neurons(model, p)).double().numpy()
        live = acts.std(0) > 1e-8
        shares = frequency_shares(acts.T, p)
        overlap, best = shares.max(1), shares.argmax(1) + 1
        on_key = np.isin(best, keys)
        cosine = table["mean_cosine"].to_numpy().astype(np.float64)
        threshold = float(comparison.manifest["params"].get("threshold", 0.7))
        stable = live & (np.nan_to_num(cosine, nan=-1.0) >= threshold)
        found_by_all = table["found_by"].to_numpy() >= dictionaries

        def split(mask):
            s, u = live & mask, live & ~mask
            return {"stable": int(s.sum()), "unstable": int(u.sum()),
                    "overlap_stable": float(overlap[s].mean()) if s.any() else None,
                    "overlap_unstable": float(overlap[u].mean()) if u.any() else None,
                    "on_key_stable": float(on_key[s].mean()) if s.any() else None,
                    "on_key_unstable": float(on_key[u].mean()) if u.any() else None}

        observed = split(stable)
        rng = np.random.default_rng(ctx.params.seed)
        idx = np.flatnonzero(live)

        def gap(mask):
            s, u = mask[idx], ~mask[idx]
            return overlap[idx][s].mean() - overlap[idx][u].mean() if s.any() and u.any() else np.nan

        diff = gap(stable)
        null = []
        for _ in range(ctx.params.draws):
            shuffled = stable.copy()
            shuffled[idx] = rng.permutation(stable[idx])
            null.append(gap(shuffled))
        null = np.array(null)
        rho = spearmanr(cosine[live], overlap[live]).statistic if live.sum() > 2 else None
        rho_null = np.array([spearmanr(cosine[live], rng.permutation(overlap[live])).statistic
                             for _ in range(min(ctx.params.draws, 200))]) if rho is not None else np.zeros(0)
        summary = {"dictionary": spec, "dictionaries": dictionaries, "latents": int(len(live)), "live": int(live.sum()),
                   "key_frequencies": keys, **observed,
                   "overlap_gap": float(diff) if np.isfinite(diff) else None,
                   "overlap_gap_chance": float(np.nanmean(null)) if np.isfinite(null).any() else None,
                   "p": float((1 + (null >= diff).sum()) / (1 + len(null))) if np.isfinite(diff) else None,
                   "spearman_cosine_overlap": float(rho) if rho is not None and np.isfinite(rho) else None,
                   # its chance: the overlaps shuffled among the live latents
                   "spearman_p": float((1 + (rho_null >= rho).sum()) / (1 + len(rho_null)))
                   if rho is not None and np.isfinite(rho) else None,
                   "threshold": threshold,
                   # found by every seed on encoder and decoder (the comparison's `shared` rule)
                   "found_by_all_live": int((found_by_all & live).sum()),
                   # dead latents that match across seeds: untrained directions can agree too
                   "found_by_all_dead": int((found_by_all & ~live).sum()),
                   "baseline": f"the stable label shuffled among the live latents, {ctx.params.draws} times"}
        def show(x):
            return "n/a" if x is None else f"{x:.3f}"

        ctx.log(f"stability: {observed['stable']} of {int(live.sum())} live latents stable; overlap "
                f"{show(observed['overlap_stable'])} stable against {show(observed['overlap_unstable'])} unstable")
        latents = {"latent": np.arange(len(live), dtype=np.int32), "live": live, "stable": stable,
                   "mean_cosine": cosine, "found_by": table["found_by"].to_numpy(), "overlap": overlap,
                   "best_frequency": best.astype(np.int32), "on_key_frequency": on_key}
        return Result(summary=summary, tables={"latents": latents},
                      figures={"stability": figure(cosine, overlap, on_key, live, summary)})


def figure(cosine, overlap, on_key, live, summary):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.subplots()
    for mask, colour, label in ((live & on_key, "tab:red", "best frequency is a key one"),
                                (live & ~on_key, "0.55", "best frequency is not a key one")):
        ax.scatter(cosine[mask], overlap[mask], s=10, c=colour, label=f"{label} ({int(mask.sum())})", linewidths=0)
    ax.axvline(summary["threshold"], color="k", lw=0.8, ls=":", label=f"stable: at least {summary['threshold']:g}")
    ax.set_xlabel(f"mean matched cosine to the other {summary['dictionaries'] - 1} seeds' SAEs")
    ax.set_ylabel("Fourier overlap (share of energy at the best frequency)")
    rho = summary["spearman_cosine_overlap"]
    ax.set_title(f"{summary['stable']} stable latents of {summary['live']} live"
                 + (f"; Spearman ρ = {rho:.2f}" if rho is not None else ""))
    ax.legend(frameon=False, fontsize=8)
    return fig
