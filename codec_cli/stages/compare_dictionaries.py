"""`codec compare dictionaries`: are the atoms the same across seeds?

    codec compare dictionaries A B [C …] --out comparison/

If SAE features are a model's true atoms, independent SAEs should find the same ones
(science.md §3: Paulo & Belrose 2025; Song et al. 2025's PW-MCC; Sharkey et al.'s MMCS).
Each input is a dictionary of F unit directions in one space of d dimensions: an SAE's
decoder rows (and, apart, its encoder rows), a Squeezer's neurons read in feature space,
or a world's true features. For every pair of inputs (docs/compare.md has the formulas):

- the signed cosine of every latent of A with every latent of B; a one-to-one matching
  maximising the summed cosine (Hungarian: scipy's `linear_sum_assignment`, or, when the
  matrix is large, `min_weight_full_bipartite_matching` over each latent's top candidates,
  never holding the whole matrix); MCC, the mean matched cosine; MMCS, the mean best
  cosine (not one-to-one); the share shared at cosine ≥ 0.7 on the decoder and on the
  encoder of the same matched pair;
- beside each: the same for random dictionaries of the same F and d (several draws), for
  the inputs at initialisation where codec's trainer can rebuild them, and the
  extreme-value level sqrt(2 ln F / d);
- with `--features` (what the SAEs extracted on the same tokens): the latents' frequencies,
  and a matching by the correlation of their activations, beside shuffled tokens.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from codec_cli import config, talk, worlds
from codec_cli.artifacts import ArtifactWriter, check_output, open_artifact
from codec_cli.config import CompareDictionariesConfig
from codec_cli.errors import BadInput, CodecError
from codec_cli.sources.features import sparse_rows
from codec_cli.talk import info

BLOCK = 2048
"""Rows of A per block of cosines on the sparse route: memory is BLOCK × F_B floats."""


@dataclass
class Dictionary:
    """One input: its latents' directions in a space of d dimensions."""

    name: str
    decoder: np.ndarray
    """[F, d] float32, unit rows (a dead, all-zero row stays zero)."""
    encoder: np.ndarray | None
    """[F, d] float32, unit rows, or None where the input has no encoder (true features)."""
    frequency: np.ndarray | None = None
    """[F] how often each latent fires, where known."""
    init: Dictionary | None = None
    """The same input at initialisation, where codec's trainer can rebuild it."""
    artifact: object = None
    """The codec artifact it was read from (a squeezer, an SAE, a world), recorded as an input."""
    sae: str | None = None
    """The SAE's fingerprint (SAEHandle.fingerprint), by which features extracted with it are found."""
    features: object = None
    """A features artifact extracted with this SAE (`--features`), for frequencies and activations."""

    @property
    def shape(self) -> tuple[int, int]:
        return self.decoder.shape


def unit(rows) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    norm = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.where(norm > 0, rows / np.where(norm > 0, norm, 1), 0).astype(np.float32)


# --------------------------------------------------------------------------- inputs


def _from_sae(name: str, handle, init=None, artifact=None) -> Dictionary:
    """An SAE's dictionary from a models.SAEHandle (or a bare sae-lens SAE: an initialisation)."""
    sae = getattr(handle, "sae", handle)
    W_dec = sae.W_dec.detach().float().cpu().numpy()
    W_enc = sae.W_enc.detach().float().cpu().numpy().T
    fingerprint = handle.fingerprint() if hasattr(handle, "fingerprint") else None
    return Dictionary(name, unit(W_dec), unit(W_enc), init=init, artifact=artifact, sae=fingerprint)


def _sae_init(art) -> Dictionary | None:
    """A codec-trained SAE (`codec sae train`) as it was before its first step."""
    from codec_cli.config import SAETrainConfig
    from codec_cli.nn.sae import make_sae

    params = art.manifest["params"]
    try:
        cfg = SAETrainConfig(**{k: params[k] for k in SAETrainConfig.__dataclass_fields__ if k in params})
        sae = make_sae(cfg, int(art.attrs["d_in"]))
    except (KeyError, TypeError, ValueError, CodecError):
        return None
    return _from_sae(f"{art.path} at initialisation", sae)


def _squeezer(art) -> Dictionary:
    """A Squeezer's M neurons as latents in feature space: W_dec rows (read-out) and W_enc columns."""
    from codec_cli.nn.squeezer import Squeezer

    w = art.tensors("weights.safetensors")
    neurons = art.table("neurons.parquet", ["neuron", "active"]).sort("neuron")
    F, M = w["W_enc"].shape
    params = art.manifest["params"]
    kept = int(art.json("metrics.json").get("instance", 0))
    fresh = Squeezer(F, M, instances=int(params.get("restarts", 1)), tied=bool(art.attrs.get("tied", True)),
                     neuron_act=str(art.attrs.get("neuron_act", "linear")),
                     seed=int(params.get("seed", 0))).weights(kept)
    init = Dictionary(f"{art.path} at initialisation", unit(fresh["W_dec"].numpy()), unit(fresh["W_enc"].numpy().T))
    return Dictionary(str(art.path), unit(w["W_dec"]), unit(w["W_enc"].T), neurons["active"].to_numpy(), init, art)


def open_dictionary(spec: str, device: str = "cpu") -> Dictionary:
    """An input by its spelling: WORLD:SAE (a world's SAE, or WORLD:truth for its true features),
    RELEASE@SAE_ID (a sae-lens release), or a directory (a squeezer, a codec SAE, a sae-lens or
    sparsify SAE)."""
    from codec_cli.sources import models

    path = Path(spec)
    if ":" in spec and not path.exists():
        world_name, _, sae = spec.rpartition(":")
        world = worlds.open_world(world_name)
        if sae == "truth":
            return _truth(world, spec)
        if sae not in world.saes:
            raise BadInput(f"{spec}: world {world.name!r} has no SAE {sae!r}",
                           hint=f"its SAEs: {', '.join(world.saes)}; or {world_name}:truth where it has true features")
        return _from_sae(spec, models.open_sae(sae, None, world, device), artifact=world.artifact)
    if "@" in spec and not path.exists():
        release, _, sae_id = spec.partition("@")
        return _from_sae(spec, models.open_sae(release, sae_id, None, device))
    if (path / "manifest.json").is_file():
        art = open_artifact(path)
        if art.kind == "squeezer":
            return _squeezer(art)
        if art.kind == "sae":
            return _from_sae(spec, models.open_sae(str(path), None, None, device), _sae_init(art), art)
        raise BadInput(f"{path}: a {art.kind!r} artifact is not a dictionary",
                       hint="give SAEs (directories, WORLD:SAE, RELEASE@SAE_ID) or squeezers")
    if path.is_dir():
        return _from_sae(spec, models.open_sae(str(path), None, None, device))
    raise BadInput(f"{spec}: no such dictionary", hint="give an SAE or squeezer directory, WORLD:SAE (e.g. "
                                                      "themes:mlp0, toy:truth) or RELEASE@SAE_ID")


def _truth(world, spec: str) -> Dictionary:
    answer = world.path / "truth" / "answer.safetensors"
    if not answer.is_file():
        raise BadInput(f"{spec}: world {world.name!r} has no true feature directions",
                       hint="the toy world has them: toy:truth")
    W = world.artifact.tensors("truth/answer.safetensors")["W"]  # [m, n]: column i is feature i
    return Dictionary(spec, unit(W.T), None, artifact=world.artifact)


def attach_features(dicts: list[Dictionary], paths) -> None:
    """Each `--features` artifact joins the input whose SAE extracted it (by the SAE's weights'
    fingerprint), giving its latents their frequencies and their activations."""
    for path in paths:
        art = open_artifact(path, "features")
        made_by = (art.attrs.get("sae") or {}).get("fingerprint")
        owners = [d for d in dicts if d.sae is not None and d.sae == made_by]
        if not owners:
            origin = (art.attrs.get("sae") or {}).get("origin")
            raise BadInput(f"{path}: extracted with an SAE that is none of the inputs ({origin})",
                           hint="give the features each input SAE extracted, on the same tokens")
        for d in owners:
            if d.features is not None:
                raise BadInput(f"{path} and {d.features.path}: two features artifacts for {d.name}",
                               hint="give one per input")
            table = art.table("features.parquet", ["feature", "frequency"]).sort("feature")
            if len(table) != d.shape[0]:
                raise BadInput(f"{path}: holds {len(table)} features, {d.name} has {d.shape[0]} latents")
            d.features, d.frequency = art, table["frequency"].to_numpy().astype(np.float64)


def same_tokens(fa, fb) -> str | None:
    """Why two features artifacts are not on the same tokens, or None when they are: the same
    shards, each with as many rows and the same token ids where both keep them."""
    shards = fa.files("shards/")
    if shards != fb.files("shards/"):
        return "their shards differ"
    for name in fa.files("tokens/"):
        if name in fb.manifest["files"]:
            a, b = fa.table(name), fb.table(name)
            if len(a) != len(b) or ("token_id" in a.columns and "token_id" in b.columns
                                    and not a["token_id"].equals(b["token_id"])):
                return f"{name} differs"
    return None


def activation_correlations(fa, fb, FA: int, FB: int, seeds: list[int | None]) -> list[np.ndarray]:
    """[FA, FB] Pearson correlations of the latents' activations (zeros included) over the same
    rows, one matrix per entry of `seeds`: None as stored, a seed for B's rows permuted within
    each shard (the null: token identity broken, each shard's make-up kept)."""
    n = 0
    sa, saa, sb, sbb = np.zeros(FA), np.zeros(FA), np.zeros(FB), np.zeros(FB)
    cross = [np.zeros((FA, FB)) for _ in seeds]
    for s_i, name in enumerate(fa.files("shards/")):
        ta, tb = fa.shard(name), fb.shard(name)
        Xa, Xb = sparse_rows(ta.indices, ta.values, FA, np.float64), sparse_rows(tb.indices, tb.values, FB, np.float64)
        n += Xa.shape[0]
        sa += np.asarray(Xa.sum(0)).ravel()
        saa += np.asarray(Xa.multiply(Xa).sum(0)).ravel()
        sb += np.asarray(Xb.sum(0)).ravel()
        sbb += np.asarray(Xb.multiply(Xb).sum(0)).ravel()
        for c, seed in zip(cross, seeds):
            B = Xb if seed is None else Xb[np.random.default_rng([seed, s_i]).permutation(Xb.shape[0])]
            c += (Xa.T @ B).toarray()
    out = []
    ma, mb = sa / max(n, 1), sb / max(n, 1)
    sd_a, sd_b = np.sqrt(np.maximum(saa / max(n, 1) - ma * ma, 0)), np.sqrt(np.maximum(sbb / max(n, 1) - mb * mb, 0))
    for c in cross:
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (c / max(n, 1) - np.outer(ma, mb)) / np.outer(sd_a, sd_b)
        r[sd_a <= 0] = np.nan
        r[:, sd_b <= 0] = np.nan
        out.append(r)
    return out


def by_activations(A: Dictionary, B: Dictionary, m: Matching, cfg) -> tuple[dict | None, np.ndarray | None]:
    """Matching by the correlation of activations on the same tokens, beside shuffled tokens:
    (scores or None with the reason, the activation partner of each of A's matched latents)."""
    from codec_cli.stages.compare_neurons import match as match_correlations

    if A.features is None or B.features is None:
        return None, None
    FA, FB = A.shape[0], B.shape[0]
    if FA * FB > cfg.dense_max:
        return {"skipped": f"{FA} × {FB} correlations exceed --dense-max"}, None
    why = same_tokens(A.features, B.features)
    if why is not None:
        return {"skipped": f"the features are not on the same tokens: {why}"}, None
    nulls = range(cfg.seed + 1, cfg.seed + 1 + cfg.draws)
    mats = activation_correlations(A.features, B.features, FA, FB, [None, *nulls])

    def mean_matched(r):
        a, b, v = match_correlations(r, sign_free=False)
        return float(np.nan_to_num(v, nan=0.0).mean()), a, b

    score, a, b = mean_matched(mats[0])
    null = [mean_matched(r)[0] for r in mats[1:]]
    partner = np.full(FA, -1)
    partner[a] = b
    return {"mcc": score, "chance_shuffled": float(np.mean(null)), "chance_shuffled_sd": float(np.std(null)),
            "same_partner_as_decoder": float((partner[m.a] == m.b).mean())}, partner[m.a]


# --------------------------------------------------------------------------- matching


@dataclass
class Matching:
    """A one-to-one matching of A's latents to B's, and each A latent's best partner."""

    a: np.ndarray
    b: np.ndarray
    cosine: np.ndarray
    """The matched pairs' cosines."""
    best: np.ndarray
    """[F_A] each A latent's best B latent (not one-to-one)."""
    best_cosine: np.ndarray
    best_back: np.ndarray
    """[F_B] each B latent's best cosine with any A latent."""


def match_dense(A: np.ndarray, B: np.ndarray) -> Matching:
    from scipy.optimize import linear_sum_assignment

    C = A @ B.T
    a, b = linear_sum_assignment(C, maximize=True)
    best = C.argmax(1)
    return Matching(a, b, C[a, b], best, C[np.arange(len(A)), best], C.max(0))


def match_sparse(A: np.ndarray, B: np.ndarray, candidates: int) -> Matching | None:
    """The matching over each latent's `candidates` best partners, both ways, in blocks of
    rows: the same as the dense one wherever its pairs are among the candidates (the
    tests check it is on sizes where both run). None where the candidates hold no
    one-to-one matching of the smaller side."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    FA, FB = len(A), len(B)
    k = min(candidates, FB)
    kb = min(candidates, FA)
    rows, cols, vals = [], [], []
    col_top = np.full((kb, FB), -np.inf, dtype=np.float32)
    col_arg = np.zeros((kb, FB), dtype=np.int64)
    best = np.zeros(FA, dtype=np.int64)
    best_cos = np.zeros(FA, dtype=np.float32)
    for start in range(0, FA, BLOCK):
        C = A[start:start + BLOCK] @ B.T
        top = np.argpartition(-C, k - 1, axis=1)[:, :k]
        r = np.repeat(np.arange(start, start + len(C)), k)
        rows.append(r)
        cols.append(top.ravel())
        vals.append(C[r - start, top.ravel()])
        best[start:start + len(C)] = C.argmax(1)
        best_cos[start:start + len(C)] = C.max(1)
        # The columns' running top candidates, merged with this block's.
        kk = min(kb, len(C))
        part = np.argpartition(-C, kk - 1, axis=0)[:kk]
        merged = np.concatenate([col_top, np.take_along_axis(C, part, 0)])
        merged_arg = np.concatenate([col_arg, part + start])
        keep = np.argpartition(-merged, kb - 1, axis=0)[:kb]
        col_top = np.take_along_axis(merged, keep, 0)
        col_arg = np.take_along_axis(merged_arg, keep, 0)
    ok = np.isfinite(col_top)
    rows.append(col_arg[ok])
    cols.append(np.broadcast_to(np.arange(FB), col_top.shape)[ok])
    vals.append(col_top[ok])
    r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals).astype(np.float64)
    _, first = np.unique(r * FB + c, return_index=True)  # a pair found from both sides, once
    r, c, v = r[first], c[first], v[first]
    # Cost 2 − cos: positive, so that no candidate is lost as a stored zero.
    graph = csr_matrix((2.0 - v, (r, c)), shape=(FA, FB))
    try:
        a, b = min_weight_full_bipartite_matching(graph)  # rows sorted, as linear_sum_assignment's
    except ValueError:
        return None
    cos = (A[a] * B[b]).sum(1)
    back = np.full(FB, -np.inf, dtype=np.float32)
    np.maximum.at(back, c, v.astype(np.float32))
    return Matching(a, b, cos, best, best_cos, back)


def match(A: np.ndarray, B: np.ndarray, route: str, dense_max: int, candidates: int) -> tuple[Matching, str]:
    """(matching, the route taken): dense up to `dense_max` cosines, else sparse, falling back to
    dense where the candidates hold no full matching."""
    if route == "dense" or (route == "auto" and len(A) * len(B) <= dense_max):
        return match_dense(A, B), "dense"
    m = match_sparse(A, B, candidates)
    if m is None:
        info(f"compare: the {candidates} best candidates per latent hold no one-to-one matching; matching densely")
        return match_dense(A, B), "dense (fallback)"
    return m, "sparse"


# --------------------------------------------------------------------------- scores


def scores(m: Matching, A: Dictionary, B: Dictionary, threshold: float) -> dict:
    """MCC, MMCS and the shared shares of one matching (on decoder rows)."""
    enc = ((A.encoder[m.a] * B.encoder[m.b]).sum(1) if A.encoder is not None and B.encoder is not None else None)
    shared_dec = m.cosine >= threshold
    shared = shared_dec & (enc >= threshold) if enc is not None else shared_dec
    n = min(len(A.decoder), len(B.decoder))
    return {"mcc": float(m.cosine.mean()), "mmcs": float(m.best_cosine.mean()),
            "mmcs_back": float(m.best_back.mean()),
            "shared_decoder": float(shared_dec.sum() / n),
            "shared_encoder": float((enc >= threshold).sum() / n) if enc is not None else None,
            "shared": float(shared.sum() / n)}, enc, shared


def random_dictionary(F: int, d: int, rng, encoder: bool = True) -> Dictionary:
    """F directions uniform on the sphere in d dimensions, and an encoder drawn apart (so that
    the shared rule reads both, as it does for the inputs; none where an input has none)."""
    decoder = unit(rng.standard_normal((F, d)))
    return Dictionary("random", decoder, unit(rng.standard_normal((F, d))) if encoder else None)


def extreme_value(F: int, d: int) -> float:
    """The Gaussian extreme-value level of the best of F random cosines in d dimensions."""
    return math.sqrt(2 * math.log(F) / d)


# --------------------------------------------------------------------------- the stage


@talk.reports
def compare_dictionaries(cfg: CompareDictionariesConfig) -> dict:
    check_output(cfg.out, "comparison")
    if len(cfg.inputs) < 2:
        raise BadInput("compare dictionaries needs at least two inputs", hint="e.g. codec compare dictionaries "
                                                                            "sae/seed-0 sae/seed-1 --out comparison/")
    twice = sorted({s for s in cfg.inputs if list(cfg.inputs).count(s) > 1})
    if twice:
        raise BadInput(f"{', '.join(twice)}: given twice", hint="give each dictionary once")
    dicts = [open_dictionary(s) for s in cfg.inputs]
    attach_features(dicts, cfg.features)
    dims = {d.shape[1] for d in dicts}
    if len(dims) > 1:
        sizes = ", ".join(f"{s} ({d.shape[1]})" for s, d in zip(cfg.inputs, dicts))
        raise BadInput(f"the dictionaries live in spaces of different widths: {sizes}",
                       hint="compare SAEs of one hook, or squeezers of one features artifact")
    rng = np.random.default_rng(cfg.seed)
    names = list(cfg.inputs)
    pair_rows, summary_pairs = [], []
    mcc = np.eye(len(dicts))
    randoms: dict[tuple, list] = {}
    matched_all, random_matched = [], None
    for (i, A), (j, B) in itertools.combinations(enumerate(dicts), 2):
        m, route = match(A.decoder, B.decoder, cfg.route, cfg.dense_max, cfg.candidates)
        s, enc, shared = scores(m, A, B, cfg.threshold)
        mcc[i, j] = mcc[j, i] = s["mcc"]
        encoders = A.encoder is not None and B.encoder is not None
        key = (len(A.decoder), len(B.decoder), A.shape[1], encoders)
        if key not in randoms:
            draws = []
            for _ in range(cfg.draws):
                RA, RB = (random_dictionary(F, key[2], rng, encoders) for F in key[:2])
                rm, _ = match(RA.decoder, RB.decoder, cfg.route, cfg.dense_max, cfg.candidates)
                draws.append(scores(rm, RA, RB, cfg.threshold)[0])
                if random_matched is None:
                    random_matched = rm.cosine
            randoms[key] = draws
        chance = {k: float(np.mean([d[k] for d in randoms[key]])) for k in ("mcc", "mmcs", "shared")}
        chance["mcc_sd"] = float(np.std([d["mcc"] for d in randoms[key]]))
        init = None
        if A.init is not None and B.init is not None:
            im, _ = match(A.init.decoder, B.init.decoder, cfg.route, cfg.dense_max, cfg.candidates)
            init = scores(im, A.init, B.init, cfg.threshold)[0]
        acts, act_partner = by_activations(A, B, m, cfg)
        summary_pairs.append({"a": names[i], "b": names[j], "route": route, **s, "chance_random": chance,
                              "at_initialisation": init, "extreme_value": extreme_value(len(B.decoder), A.shape[1]),
                              "activations": acts})
        matched_all.append(m.cosine)
        pair_rows.append(pl.DataFrame({
            "a": [names[i]] * len(m.a), "b": [names[j]] * len(m.a), "latent": m.a.astype(np.int32),
            "partner": m.b.astype(np.int32), "cosine": m.cosine.astype(np.float32),
            "encoder_cosine": pl.Series(enc, dtype=pl.Float32) if enc is not None else pl.Series([None] * len(m.a),
                                                                                                   dtype=pl.Float32),
            "best": m.best[m.a].astype(np.int32), "best_cosine": m.best_cosine[m.a].astype(np.float32),
            "shared": shared,
            "activation_partner": pl.Series(act_partner if act_partner is not None else [None] * len(m.a),
                                            dtype=pl.Int32)}))
        info(f"compare: {names[i]} × {names[j]}: MCC {s['mcc']:.3f} (random {chance['mcc']:.3f}), "
             f"shared {s['shared']:.1%} (random {chance['shared']:.1%}) [{route}]")
    pairs = pl.concat(pair_rows)
    latents = latent_table(pairs, names, dicts)
    n = len(dicts)
    pw = float(np.mean([p["mcc"] for p in summary_pairs]))
    summary = {
        "inputs": names, "latents": [d.shape[0] for d in dicts], "d": dicts[0].shape[1],
        "threshold": cfg.threshold,
        "shared_rule": f"a latent is shared with another input when its Hungarian partner on the decoder has decoder "
                       f"and encoder cosine ≥ {cfg.threshold} (decoder alone where an input has no encoder)",
        "pw_mcc": pw, "pw_mcc_chance_random": float(np.mean([p["chance_random"]["mcc"] for p in summary_pairs])),
        "pw_mcc_at_initialisation": (float(np.mean([p["at_initialisation"]["mcc"] for p in summary_pairs]))
                                     if all(p["at_initialisation"] for p in summary_pairs) else None),
        "shared": float(np.mean([p["shared"] for p in summary_pairs])),
        "shared_chance_random": float(np.mean([p["chance_random"]["shared"] for p in summary_pairs])),
        "found_by_all": float((latents.filter(pl.col("input") == names[0])["found_by"] == n).mean()),
        "pairs": summary_pairs}
    recorded = {d.artifact.fingerprint: d.artifact for d in dicts if d.artifact is not None}
    with ArtifactWriter(cfg.out, "comparison", command="codec compare dictionaries", params=config.to_dict(cfg),
                        inputs=recorded.values(),
                        attrs={"compare": "dictionaries", "inputs": names, "pw_mcc": pw}) as out:
        out.write_table("pairs.parquet", pairs)
        out.write_table("latents.parquet", latents)
        out.write_json("summary.json", summary)
        for name, fig in figures(names, mcc, matched_all, random_matched, latents, summary).items():
            out.write_figure(f"{name}.png", fig)
    return summary


def latent_table(pairs: pl.DataFrame, names: list[str], dicts: list[Dictionary]) -> pl.DataFrame:
    """latents.parquet: per input and latent, how many inputs found it (itself included:
    shared with each other input counts one) and its mean matched cosine to the others."""
    # Each unordered pair holds A's latents; B's side is the same rows read the other way.
    both = pl.concat([pairs.select(pl.col("a").alias("input"), "latent", "cosine", "shared"),
                      pairs.select(pl.col("b").alias("input"), pl.col("partner").alias("latent"), "cosine", "shared")])
    per = both.group_by("input", "latent").agg(pl.col("shared").sum().alias("shared_with"),
                                              pl.col("cosine").mean().alias("mean_cosine"))
    frames = []
    for name, d in zip(names, dicts):
        F = d.shape[0]
        frames.append(pl.DataFrame({"input": [name] * F, "latent": np.arange(F, dtype=np.int32),
                                    "frequency": pl.Series(d.frequency if d.frequency is not None else [None] * F,
                                                           dtype=pl.Float64)}))
    out = pl.concat(frames).join(per, on=["input", "latent"], how="left")
    return out.with_columns((pl.col("shared_with").fill_null(0) + 1).cast(pl.Int32).alias("found_by"),
                            pl.col("mean_cosine")).drop("shared_with").sort("input", "latent", maintain_order=True)


def figures(names, mcc, matched_all, random_matched, latents, summary) -> dict:
    from matplotlib.figure import Figure

    out = {}
    n = len(names)
    fig = Figure(figsize=(1.2 * n + 3, 1.0 * n + 2.5))
    ax = fig.subplots()
    im = ax.imshow(mcc, vmin=0, vmax=1, cmap="viridis")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{mcc[i, j]:.2f}", ha="center", va="center", color="w" if mcc[i, j] < 0.6 else "k")
    labels = [Path(s).name or s for s in names]
    ax.set_xticks(range(n), labels, rotation=30, ha="right")
    ax.set_yticks(range(n), labels)
    fig.colorbar(im, ax=ax, label="MCC (decoder)")
    ax.set_title(f"PW-MCC {summary['pw_mcc']:.3f}; random dictionaries {summary['pw_mcc_chance_random']:.3f}")
    fig.tight_layout()
    out["pw_mcc"] = fig

    fig = Figure(figsize=(6.4, 4))
    ax = fig.subplots()
    bins = np.linspace(-0.2, 1, 49)
    ax.hist(np.concatenate(matched_all), bins=bins, alpha=0.8, density=True,
            label="matched latents, all pairs of inputs")
    ax.hist(random_matched, bins=bins, alpha=0.6, density=True, label="random dictionaries of the same F and d")
    ax.axvline(summary["threshold"], color="k", ls="--", lw=1, label=f"shared at {summary['threshold']}")
    ax.set(xlabel="matched cosine (decoder)", ylabel="density", title="Matched cosines against chance")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out["matched"] = fig

    known = latents.filter(pl.col("frequency").is_not_null() & (pl.col("frequency") > 0))
    if len(known):
        fig = Figure(figsize=(6.4, 4))
        ax = fig.subplots()
        from matplotlib.ticker import NullFormatter

        rng = np.random.default_rng(0)
        found, freq = known["found_by"].to_numpy(), known["frequency"].to_numpy()
        ax.scatter(found + rng.uniform(-0.2, 0.2, len(found)), freq, s=5, alpha=0.4)
        levels = np.unique(found)
        ax.scatter(levels, [np.median(freq[found == k]) for k in levels], marker="_", s=600, color="k",
                   label="median")
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(range(1, len(summary["inputs"]) + 1))
        ax.set(xlabel=f"found by (of {len(summary['inputs'])} inputs)", ylabel="activation frequency",
               title="Are the stable latents the frequent ones?")
        ax.legend(fontsize=8)
        fig.tight_layout()
        out["stability"] = fig
    return out
