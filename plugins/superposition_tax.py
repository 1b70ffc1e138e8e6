"""superposition-tax: what packing F features into M neurons costs (docs/analyses.md).

The Squeezer's held-out loss is a sum over features, so it splits exactly into
*omission*, the error on the features it does not represent, and *interference*, the
error on those it does. The *monosemantic baseline* of the same M gives each of the M
features that cost most to drop a neuron of its own, which passes it through the
decoder's ReLU unchanged (x ≥ 0), and predicts every other feature by its mean, the best
a decoder bias can do, so that a dropped feature costs its weighted variance. The
ratio of the two losses says whether superposition pays; the parts say why.
"""

from __future__ import annotations

from codec_cli.plugin_api import Analysis, Context, Headline, Result, Section, held_out
from codec_cli.stages.html import short as g


def held_out_moments(features, squeezer, scale):
    """Each feature's mean and variance on the Squeezer's held-out rows, in the units
    the Squeezer read them in (the SAE's, divided by `scale`)."""
    import numpy as np

    idx, val = held_out(features, squeezer)
    n, F = len(idx), len(scale)
    used = idx >= 0
    f = idx[used]
    x = (val[used] / scale[f]).astype(np.float64)  # float32 over float32, as codec squeeze divides
    # The Squeezer adds up a feature listed twice in one row; so do we, before squaring.
    cell, at = np.unique(np.nonzero(used)[0] * F + f, return_inverse=True)
    x, f = np.bincount(at, x), cell % F
    mean = np.bincount(f, x, minlength=F) / n
    return mean, np.maximum(np.bincount(f, x * x, minlength=F) / n - mean**2, 0.0)


class SuperpositionTax(Analysis):
    name = "superposition-tax"
    api_version = 1
    requires = ("squeezer", "features")

    def report(self, art) -> Section:
        s = art.json("summary.json")
        q, mono = s.get("squeezer") or {}, s.get("monosemantic") or {}
        mono_is = f"{mono.get('represented')} monosemantic neurons (the most important features, no interference)"
        return Section(
            question="tax",
            answer=f"loss {g(q.get('loss'))} = omission {g(q.get('omission'))} + interference "
                   f"{g(q.get('interference'))}, against {g(mono.get('loss'))} one feature per neuron "
                   f"(ratio {g(s.get('ratio'))})",
            headline=[Headline("Squeezer loss", q.get("loss"), mono.get("loss"), mono_is),
                      Headline("omission", q.get("omission"), q.get("omission_floor"), "the omission floor"),
                      Headline("interference", q.get("interference"), mono.get("interference"), mono_is),
                      Headline("loss ratio (Squeezer / monosemantic)", s.get("ratio"), 1.0, "no gain from superposition"),
                      Headline("features per neuron", q.get("features_per_neuron"), mono.get("features_per_neuron"),
                               mono_is)],
            text="The tax splits the held-out loss into what the Squeezer leaves out (omission) and what its "
                 "features cost each other (interference); docs/analyses.md.")

    def run(self, ctx: Context) -> Result:
        import numpy as np

        from codec_plugins.packing import open_packing

        sq, features = ctx.inputs["squeezer"], ctx.inputs["features"]
        pk = open_packing(sq)
        F, M = pk.shape
        scale = sq.tensors("weights.safetensors", {"scale": (("float32",), 1)})["scale"]
        mean, var = held_out_moments(features, sq, scale)  # refuses features the Squeezer was not trained on

        # Each feature's share of a loss, weighted as the Squeezer's is: (1/F) w_f · error.
        w, rep = pk.importance, pk.represented
        squeezer = w * pk.mse / F
        dropping = w * var / F  # a dropped feature predicted by its mean
        kept = np.zeros(F, dtype=bool)
        kept[np.argsort(-dropping, kind="stable")[:M]] = True
        kept &= dropping > 0  # a neuron on a constant feature buys nothing
        monosemantic = np.where(kept, 0.0, dropping)

        loss, mono = float(squeezer.sum()), float(monosemantic.sum())
        omission, interference = float(squeezer[~rep].sum()), float(squeezer[rep].sum())
        R = int(rep.sum())
        summary = {
            "features": F, "neurons": M,
            "ratio": loss / mono if mono > 0 else None,
            "squeezer": {"loss": loss, "omission": omission, "interference": interference,
                         "represented": R, "features_per_neuron": R / M,
                         "omission_floor": float(dropping[~rep].sum()),
                         "interference_per_feature": interference * F / R if R else None},
            "monosemantic": {"loss": mono, "omission": mono, "interference": 0.0,
                             "represented": int(kept.sum()), "features_per_neuron": int(kept.sum()) / M},
        }
        ctx.log(f"superposition-tax: Squeezer loss {loss:.4g} (omission {omission:.3g}, interference "
                f"{interference:.3g}, {R} features in {M} neurons) vs monosemantic {mono:.4g}")
        table = {"feature": np.arange(F, dtype=np.int32), "status": pk.status, "weight": w, "mean": mean,
                 "var": var, "squeezer_error": pk.mse, "monosemantic_error": np.where(kept, 0.0, var),
                 "monosemantic_kept": kept}
        return Result(summary=summary, tables={"features": table}, figures={"tax": figure(summary)})


def figure(summary: dict):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    codes = (summary["squeezer"], summary["monosemantic"])
    names = [f"Squeezer\n{c['represented']} features in {summary['neurons']} neurons" if i == 0 else
             f"monosemantic\n{c['represented']} features, one per neuron" for i, c in enumerate(codes)]
    omission = [c["omission"] for c in codes]
    interference = [c["interference"] for c in codes]
    ax.bar(names, omission, width=0.5, color="tab:gray", label="omission (features not represented)")
    ax.bar(names, interference, width=0.5, bottom=omission, color="tab:orange",
           label="interference (error on represented features)")
    top = max(c["loss"] for c in codes)
    for x, c in enumerate(codes):
        ax.text(x, c["loss"] + 0.02 * top, f"{c['loss']:.3g}\n= {c['omission']:.3g} + {c['interference']:.3g}",
                ha="center", va="bottom", fontsize=9)
    floor = summary["squeezer"]["omission_floor"]
    ax.hlines(floor, -0.25, 0.25, colors="black", linestyles="dashed", label="Squeezer's omission floor")
    ax.set_ylim(0, 1.25 * top if top > 0 else 1)
    ax.set_ylabel("held-out loss (importance-weighted MSE)")
    ratio = summary["ratio"]
    ax.set_title("superposition tax" + (f": Squeezer / monosemantic = {ratio:.4g}" if ratio is not None else ""))
    ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1)
    return fig
