"""fourier: does the modadd model compute with Fourier features, and do its SAE's latents and
a Squeezer's neurons keep them? (docs/analyses.md)

Everything is measured on the complete grid of p² inputs `a b =`, at the `=` position, by
running the world's model (and the SAE the features came from, and the Squeezer) itself:

- W_E's energy per frequency k (its cos and sin terms), the world's key frequencies beside it;
- a pattern's Fourier share at k: the 2-D Fourier basis over (a, b) is the products of the
  1-D one (the constant, cos and sin of 2πkx/p); the terms of frequency k are those whose
  frequency in a and in b are each 0 or k, the constant alone left out; the share is their
  energy over the pattern's whole non-constant energy (Nanda et al. 2023's fraction of a
  neuron's variance explained by one frequency);
- each MLP neuron's, SAE latent's and synthetic neuron's best frequency and its share (the
  Fourier overlap), and whether that frequency is a key one;
- beside chance, by the same rule: random directions in the neuron space (their linear
  read-out over the grid), and every pattern with its residues shuffled (one permutation of
  a and one of b per draw: the same values, the Fourier structure gone).
"""

from __future__ import annotations

from dataclasses import dataclass

from codec_cli.errors import BadInput
from codec_cli.plugin_api import Analysis, Context, Headline, NotApplicable, Result, Section
from codec_cli.stages.html import short as g
from codec_plugins.packing import refuse_unless


@dataclass(frozen=True)
class Params:
    min_share: float = 0.5
    """A neuron names a key frequency when its best frequency holds at least this share of its energy."""
    min_neurons: float = 0.02
    """… and the frequency is the best one of at least this share of the live neurons."""
    draws: int = 20
    """Random directions and residue shuffles behind each chance level."""
    seed: int = 0
    """Seed of the random directions and shuffles."""

    def __post_init__(self) -> None:
        refuse_unless(0 < self.min_share <= 1, "fourier", "min_share", self.min_share, "it is a share in (0, 1]")
        refuse_unless(0 <= self.min_neurons < 1, "fourier", "min_neurons", self.min_neurons,
                      "it is a share in [0, 1)")
        refuse_unless(self.draws >= 1, "fourier", "draws", self.draws, "chance needs at least 1 draw")


def frequency_shares(patterns, p: int):
    """[n, ⌊p/2⌋] each pattern's (rows of [n, p²], a-major) share of non-constant energy at
    each frequency, by the 2-D Fourier basis over (a, b)."""
    import numpy as np

    from codec_cli.worlds.modadd import fourier_basis

    B, freq = fourier_basis(p)
    B = B.numpy()
    freq = np.array(freq)
    X = np.asarray(patterns, dtype=np.float64).reshape(-1, p, p)
    C = np.einsum("ia,nab,jb->nij", B, X, B, optimize=True) ** 2
    C[:, 0, 0] = 0.0
    total = C.sum((1, 2))
    K = p // 2
    out = np.zeros((len(X), K))
    for k in range(1, K + 1):
        mask = np.isin(freq, (0, k))
        out[:, k - 1] = C[:, mask][:, :, mask].sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total[:, None] > 0, out / total[:, None], 0.0)


def describe(shares, keys: list[int], live) -> dict:
    """Best frequency and overlap per pattern, and their summary over the live ones."""
    import numpy as np

    best = shares.argmax(1) + 1
    overlap = shares.max(1)
    on_key = np.isin(best, keys)
    return {"best": best, "overlap": overlap, "on_key": on_key,
            "summary": {"count": int(live.sum()),
                        "mean_overlap": float(overlap[live].mean()) if live.any() else None,
                        "on_key_frequency": float(on_key[live].mean()) if live.any() else None}}


def chance(patterns, live, p: int, draws: int, rng) -> float | None:
    """The mean overlap of the live patterns with their residues shuffled (a true null: the
    same values, no Fourier structure)."""
    import numpy as np

    X = np.asarray(patterns)[live].reshape(-1, p, p)
    if not len(X):
        return None
    means = []
    for _ in range(draws):
        pa, pb = rng.permutation(p), rng.permutation(p)
        means.append(frequency_shares(X[:, pa][:, :, pb].reshape(len(X), -1), p).max(1).mean())
    return float(np.mean(means))


class Fourier(Analysis):
    name = "fourier"
    api_version = 1
    requires = ("world",)
    optional = ("features", "squeezer")
    Params = Params

    def report(self, art) -> Section:
        s = art.json("summary.json")
        head, said = [Headline("W_E energy on the key frequencies", s.get("key_energy_share"))], []
        for part in ("neurons", "latents", "synthetic_neurons"):
            x = s.get(part)
            if not isinstance(x, dict):
                continue
            name = part.replace("_", " ")
            head += [Headline(f"{name}: mean Fourier overlap", x.get("mean_overlap"), x.get("shuffled_residues"),
                              "the same patterns, residues shuffled"),
                     Headline(f"{name}: mean Fourier overlap", x.get("mean_overlap"), x.get("random_directions"),
                              "random directions in the neuron space"),
                     Headline(f"{name}: share on a key frequency", x.get("on_key_frequency"))]
            said.append(f"{name} overlap {g(x.get('mean_overlap'))} (residues shuffled {g(x.get('shuffled_residues'))})")
        keys = ", ".join(map(str, s.get("key_frequencies") or []))
        found = (s.get("neurons") or {}).get("key_frequencies_found")
        return Section(
            question="geometry",
            answer=f"Fourier circles at key frequencies {keys}" + (f" (the neurons name {', '.join(map(str, found))})"
                                                                    if found else "") + "; " + "; ".join(said),
            headline=head, text=f"Modular addition mod {s.get('p')}: a pattern's share of energy at one frequency "
                                "(Nanda et al. 2023); docs/analyses.md.",
            tables=["neurons.parquet", "latents.parquet", "spectrum.parquet"])

    def run(self, ctx: Context) -> Result:
        import numpy as np
        import polars as pl
        import torch

        from codec_cli.worlds import World
        from codec_cli.worlds import modadd

        world = World(ctx.inputs["world"])
        if world.name != "modadd":
            raise NotApplicable(f"fourier reads the modadd world's residues; {world.path} is the {world.name} world")
        _, cfg = world.config()
        model, p, prm = world.model(), cfg.p, ctx.params
        rng = np.random.default_rng(prm.seed)
        truth = ctx.inputs["world"].json("truth/key_frequencies.json")
        keys = [int(k) for k in truth["key_frequencies"]]
        acts = modadd.neurons(model, p).double()  # [p², d_mlp]
        spectrum = modadd.embedding_spectrum(model, p)

        neurons = acts.T.numpy()
        live = neurons.std(1) > 1e-8
        shares = frequency_shares(neurons, p)
        n = describe(shares, keys, live)
        counted = live & (n["overlap"] >= prm.min_share)
        freqs, counts = np.unique(n["best"][counted], return_counts=True)
        found = sorted(int(f) for f, c in zip(freqs, counts) if c >= prm.min_neurons * live.sum())
        dirs = rng.standard_normal((prm.draws, acts.shape[1]))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        random_dir = frequency_shares(dirs @ acts.T.numpy(), p).max(1)
        summary = {"p": p, "key_frequencies": keys,
                   "key_energy_share": float(spectrum[[k - 1 for k in keys]].sum()) if keys else 0.0,
                   "neurons": {**n["summary"], "key_frequencies_found": found, "matches_world": found == keys,
                               "shuffled_residues": chance(neurons, live, p, prm.draws, rng),
                               "random_directions": float(random_dir.mean())}}
        tables = {"spectrum": pl.DataFrame({"frequency": np.arange(1, p // 2 + 1, dtype=np.int32),
                                            "energy_share": spectrum, "key": np.isin(np.arange(1, p // 2 + 1), keys)}),
                  "neurons": self._table("neuron", n, live)}
        patterns = {"neurons": (shares, live)}

        if "features" in ctx.inputs:
            from codec_cli.sources.models import reopen_sae

            handle, _ = reopen_sae(ctx.inputs["features"])
            with torch.no_grad():
                F = handle.sae.encode(acts.float()).double().numpy()  # [p², d_sae]
            latents = F.T
            alive = latents.std(1) > 1e-8
            fs = frequency_shares(latents, p)
            d = describe(fs, keys, alive)
            summary["latents"] = {**d["summary"], "dead": int((~alive).sum()),
                                  "shuffled_residues": chance(latents, alive, p, prm.draws, rng),
                                  "random_directions": float(random_dir.mean())}
            tables["latents"] = self._table("latent", d, alive)
            patterns["latents"] = (fs, alive)
            if "squeezer" in ctx.inputs:
                w = ctx.inputs["squeezer"].tensors("weights.safetensors")
                scale = w.get("scale", np.ones(F.shape[1]))
                h = (F / scale) @ w["W_enc"].astype(np.float64) + w.get("b_enc", 0.0)
                if ctx.inputs["squeezer"].attrs.get("neuron_act") == "relu":
                    h = np.maximum(h, 0.0)
                synth = h.T
                on = synth.std(1) > 1e-8
                ss = frequency_shares(synth, p)
                s = describe(ss, keys, on)
                summary["synthetic_neurons"] = {**s["summary"],
                                                "shuffled_residues": chance(synth, on, p, prm.draws, rng)}
                tables["synthetic_neurons"] = self._table("neuron", s, on)
                patterns["synthetic neurons"] = (ss, on)
        elif "squeezer" in ctx.inputs:
            raise BadInput("a squeezer's neurons are read through its features", hint="give its features artifact too")
        summary["baseline"] = (f"{prm.draws} random directions in the neuron space, and every pattern with its "
                               "residues shuffled, by the same rule")
        ctx.log(f"fourier: key frequencies {keys}; the neurons name {found}")
        return Result(summary=summary, tables=tables, figures={"fourier": figure(spectrum, keys, patterns, p)})

    @staticmethod
    def _table(what: str, d: dict, live) -> dict:
        import numpy as np

        return {what: np.arange(len(live), dtype=np.int32), "live": live, "best_frequency": d["best"].astype(np.int32),
                "overlap": d["overlap"], "on_key_frequency": d["on_key"]}


def figure(spectrum, keys: list[int], patterns: dict, p: int):
    import numpy as np
    from matplotlib.figure import Figure

    n = 1 + len(patterns)
    fig = Figure(figsize=(4.6 * n, 4.2), layout="constrained")
    axes = fig.subplots(1, n)
    k = np.arange(1, p // 2 + 1)
    axes[0].bar(k, spectrum, color=["tab:red" if f in keys else "0.6" for f in k])
    axes[0].set_xlabel("frequency k")
    axes[0].set_ylabel("share of W_E's non-constant energy")
    axes[0].set_title(f"W_E's spectrum (p = {p}); key {', '.join(map(str, keys))}")
    for ax, (name, (shares, live)) in zip(axes[1:], patterns.items()):
        best = shares.argmax(1) + 1
        overlap = shares.max(1)
        order = np.lexsort((-overlap[live], best[live]))
        ax.imshow(shares[live][order].T, aspect="auto", origin="lower", cmap="viridis", vmin=0, vmax=1,
                  extent=(0, int(live.sum()), 0.5, p // 2 + 0.5), interpolation="nearest")
        ax.set_xlabel(f"{name}, by best frequency ({int(live.sum())} live)")
        ax.set_ylabel("frequency k")
        ax.set_title(f"{name}: energy share per frequency")
    return fig
