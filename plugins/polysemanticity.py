"""polysemanticity: which features each synthetic neuron carries (docs/analyses.md).

A neuron carries a represented feature when the feature drives it (its activation when
that feature alone fires at its typical strength) both absolutely and relative to the
neuron's strongest. The chance baseline is the same count in randomly rotated neuron
bases: a linear Squeezer's loss does not change under a rotation of its neurons, so only
a count well away from the rotated one says that the basis lines features up with neurons.
"""

from __future__ import annotations

from dataclasses import dataclass

from codec_cli.plugin_api import Analysis, Context, Headline, Result, Section
from codec_cli.stages.html import short as g
from codec_plugins.packing import Roommates, refuse_unless


@dataclass(frozen=True)
class Params(Roommates):
    rotations: int = 20
    """Random rotations of the neuron basis for the chance baseline."""
    seed: int = 0
    """Seed of the random rotations."""

    def __post_init__(self) -> None:
        super().__post_init__()
        refuse_unless(self.rotations >= 1, "polysemanticity", "rotations", self.rotations,
                      "the chance baseline needs at least 1 rotation")


def counts(pk, W, p: Params):
    """(features per neuron [M], neurons per feature [F], member rows) of codes W."""
    import numpy as np

    from codec_plugins.packing import members

    f, n, d = members(pk.drive(W), p.relative, p.absolute, pk.represented)
    F, M = W.shape
    return np.bincount(n, minlength=M), np.bincount(f, minlength=F), (f, n, d)


def shares(per_neuron) -> dict:
    carrying = per_neuron[per_neuron > 0]
    return {"monosemantic_share": float((carrying == 1).mean()) if len(carrying) else None,
            "features_per_neuron": float(carrying.mean()) if len(carrying) else None}


def random_rotation(M: int, rng):
    import numpy as np

    q, r = np.linalg.qr(rng.standard_normal((M, M)))
    return q * np.sign(np.diag(r))  # Haar-distributed


class Polysemanticity(Analysis):
    name = "polysemanticity"
    api_version = 1
    requires = ("squeezer",)
    Params = Params

    def report(self, art) -> Section:
        s, c = art.json("summary.json"), art.json("summary.json").get("chance", {})
        what = c.get("what", "random rotations")
        return Section(
            question="polysemanticity",
            answer=f"{g(s.get('features_per_neuron'))} features per neuron against {g(c.get('features_per_neuron'))} "
                   f"in random bases; {g(s.get('monosemantic_share'))} of carrying neurons monosemantic",
            headline=[Headline("features per carrying neuron", s.get("features_per_neuron"),
                               c.get("features_per_neuron"), what),
                      Headline("neurons per represented feature", s.get("neurons_per_feature"),
                               c.get("neurons_per_feature"), what),
                      Headline("monosemantic share", s.get("monosemantic_share"), c.get("monosemantic_share"), what),
                      Headline("carrying neurons", s.get("carrying_neurons")),
                      Headline("represented features", s.get("represented_features"))],
            text=f"Basis: {s.get('basis')}. A neuron carries a feature by the roommate rule (docs/analyses.md).",
            tables=["neurons.parquet", "members.parquet"])

    def run(self, ctx: Context) -> Result:
        import numpy as np

        from codec_plugins.packing import open_packing

        pk = open_packing(ctx.inputs["squeezer"])
        p = ctx.params
        F, M = pk.shape
        rep = pk.represented
        per_neuron, per_feature, (f, n, d) = counts(pk, pk.W_enc, p)
        rng = np.random.default_rng(p.seed)
        chance = [counts(pk, pk.W_enc @ random_rotation(M, rng), p)[:2] for _ in range(p.rotations)]
        chance_neuron = np.concatenate([c[0] for c in chance])
        chance_feature = np.concatenate([c[1][rep] for c in chance])
        top = np.where(rep[:, None], pk.drive(), 0.0).max(0)
        members = {"neuron": n.astype(np.int32), "feature": f.astype(np.int32), "weight": pk.W_enc[f, n],
                   "drive": d, "relative": d / top[n]}
        carried = [f[n == i].astype(np.int32).tolist() for i in range(M)]
        neurons = {"neuron": np.arange(M, dtype=np.int32), "n_features": per_neuron.astype(np.int32),
                   "features": carried}
        features = {"feature": np.arange(F, dtype=np.int32), "status": pk.status,
                    "n_neurons": per_feature.astype(np.int32)}
        summary = {"neurons": M, "represented_features": int(rep.sum()),
                   "carrying_neurons": int((per_neuron > 0).sum()),
                   **shares(per_neuron),
                   "polysemantic_share": float((per_neuron[per_neuron > 0] > 1).mean()) if (per_neuron > 0).any() else None,
                   "neurons_per_feature": float(per_feature[rep].mean()) if rep.any() else None,
                   "chance": {**shares(chance_neuron),
                              "neurons_per_feature": float(chance_feature.mean()) if rep.any() else None,
                              "what": f"the same counts in {p.rotations} randomly rotated neuron bases"},
                   "basis": pk.basis()}
        if pk.sign_free():
            ctx.log("polysemanticity: warning: linear neurons have no basis of their own; compare with the chance "
                    "column, or squeeze with --neuron-act relu")
        ctx.log(f"polysemanticity: {summary['carrying_neurons']}/{M} neurons carry features, "
                f"{summary['monosemantic_share']} monosemantic (chance {summary['chance']['monosemantic_share']})")
        return Result(summary=summary, tables={"members": members, "neurons": neurons, "features": features},
                      figures={"histograms": figure(per_neuron, per_feature[rep], chance_neuron, chance_feature,
                                                    p.rotations)})


def figure(per_neuron, per_feature, chance_neuron, chance_feature, rotations: int):
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6), layout="constrained")
    for ax, real, chance, what in zip(fig.subplots(1, 2), (per_neuron, per_feature), (chance_neuron, chance_feature),
                                      ("features per neuron", "neurons per feature (represented features)")):
        top = int(max(real.max(initial=0), chance.max(initial=0)))
        bins = np.arange(top + 2) - 0.5
        ax.hist(real, bins=bins, color="tab:blue", alpha=0.8, label="Squeezer")
        ax.hist(chance, bins=bins, weights=np.full(len(chance), 1 / max(rotations, 1)), histtype="step",
                color="black", linewidth=1.5, label="random basis (chance)")
        ax.set_xlabel(what)
        ax.set_ylabel("count")
        ax.legend(frameon=False)
    fig.suptitle("polysemanticity: how features spread over neurons")
    return fig
