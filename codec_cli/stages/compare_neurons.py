"""`codec compare neurons`: do the Squeezer's synthetic neurons fire like the model's own?

    codec compare neurons squeezer/ [features/] --out comparison/

The validation loop of the Neural Codec hypothesis (seeds/001): an SAE trained on a
model's MLP neurons decompresses them into features, the Squeezer re-compresses those
features into as many ReLU neurons, and if the synthetic neurons fire like the real ones
and carry the same features, the features are plausibly the atoms the neurons were made
of. On the same tokens, streamed shard by shard (docs/compare.md has every formula):

1. firing: the Pearson correlation of every synthetic with every real neuron, from
   running co-moments (never a tokens × neurons matrix beyond one shard), a one-to-one
   matching that maximises the summed correlation (Hungarian, scipy's
   `linear_sum_assignment`) and each neuron's best partner;
2. interference: which features each neuron carries (its roommates, by one rule for both
   sides: how far the feature moves the neuron; and by weights, where the SAE reads the
   neurons' own hook), their overlap for matched pairs (Jaccard, weighted Jaccard), and
   each neuron's OR-gate degree (or_gate.degree);
3. chance, measured with the same rules: randomly initialised Squeezers of the same shape,
   the trained one with its tokens shuffled against the real neurons inside each shard
   (and, for linear neurons, randomly rotated), random pairings of neurons, null neurons;
   and a ceiling, where the SAE reads the neurons' hook: its own reconstruction of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from codec_cli import config, talk
from codec_cli.artifacts import ArtifactWriter, check_lineage, check_not_an_input, check_output, open_artifact
from codec_cli.config import CompareNeuronsConfig
from codec_cli.errors import ArtifactError, BadInput
from codec_cli.sources.features import NEURONS, Batches, Piece, shard_number, sparse_rows, top_rows
from codec_cli.talk import info, progress

BUDGET = 1 << 30
"""Bytes of accumulators held at once; baselines beyond it are measured in further passes over the rows."""
MIN_FIRES = 10
"""A feature needs this many firing rows among those compared before its moves name roommates."""
NULL_NEURONS = 10
"""Null neurons per neuron, at most, behind an OR-gate degree's chance level (each a mean over them)."""
SCATTER_ROWS = 4096
"""Rows kept (spread over the shards) for the scatter plots of matched pairs."""


# --------------------------------------------------------------------------- inputs


def open_inputs(cfg: CompareNeuronsConfig):
    """(squeezer, features), checked to belong together and to hold what a comparison needs."""
    sq = open_artifact(cfg.squeezer, "squeezer")
    if cfg.features is None:
        made_from = [i for i in sq.inputs if i.get("kind") == "features"]
        path = Path(made_from[0]["path"]) if made_from else None
        if path is None or not (path / "manifest.json").is_file():
            raise BadInput(f"{sq.path}: the features it was trained on are not where it recorded them "
                           f"({path})", hint="name them: codec compare neurons SQUEEZER FEATURES")
        features = open_artifact(path, "features")
    else:
        features = open_artifact(cfg.features, "features")
    check_lineage([sq, features])
    hook = features.attrs.get("neurons")
    if not hook or not features.files("neurons/"):
        raise BadInput(f"{features.path} holds no real neurons to compare with",
                       hint="extract them beside the features: codec extract … --neurons blocks.L.mlp.hook_post")
    if sq.attrs.get("neuron_act") != "relu" and not cfg.allow_linear:
        raise BadInput(f"{sq.path} has linear neurons, whose basis is arbitrary: any rotation of them fits as well",
                       hint="squeeze with --neuron-act relu, or pass --allow-linear to score them beside random "
                            "rotations")
    return sq, features


@dataclass
class Rows:
    """The compared rows, piece by piece: the squeezer's input (top-k, scaled; -1 in empty slots,
    which hold 0) and the real neurons."""

    features: object
    pieces: list[Piece]
    k: int
    scale: np.ndarray

    @property
    def n(self) -> int:
        return sum(p.rows for p in self.pieces)

    def __iter__(self):
        for p in self.pieces:
            t = self.features.shard(p.shard)
            idx, val = top_rows(t.indices, t.values.astype(np.float32), self.k)
            name = NEURONS.format(shard_number(p.shard))
            if name not in self.features.manifest["files"]:
                raise ArtifactError(self.features.path / name, f"missing: {p.shard} has no real neurons beside it",
                                    hint="re-extract with --neurons")
            acts = self.features.tensors(name, {"acts": (("float32", "float16"), 2)})["acts"]
            if len(acts) != len(idx):
                raise ArtifactError(self.features.path / name, f"holds {len(acts)} rows, its shard {len(idx)}")
            idx, val = idx[p.start:p.stop].astype(np.int64), val[p.start:p.stop]
            fired = idx >= 0
            val = np.where(fired, val / self.scale[np.maximum(idx, 0)], 0).astype(np.float32)
            yield idx, val, acts[p.start:p.stop].astype(np.float32)


def compared_rows(cfg: CompareNeuronsConfig, sq, features, weights: dict) -> Rows:
    """The squeezer's held-out rows (the last `eval_rows`, as `codec squeeze` cut them) or all."""
    k = int(sq.attrs["k"])
    held = int(sq.manifest["params"].get("eval_rows", 8192))
    batches = Batches(features, k, 1, 1, held, 0)
    pieces = batches.held if cfg.rows == "held-out" else batches.train + batches.held
    F = weights["W_enc"].shape[0]
    scale = weights["scale"].astype(np.float32) if "scale" in weights else np.ones(F, np.float32)
    return Rows(features, [p for p in pieces if p.rows], k, scale)


def neuron_width(features, shard: str) -> int:
    """The number of real neurons, from the header of the neurons file beside `shard` (no tensor is read)."""
    from safetensors import safe_open

    from codec_cli.artifacts import _parse

    path = features.path / NEURONS.format(shard_number(shard))

    def width(p):
        with safe_open(p, framework="numpy") as f:
            shape = f.get_slice("acts").get_shape()
        if len(shape) != 2:
            raise ValueError(f"acts has {len(shape)} dimensions, expected 2")
        return int(shape[1])

    return _parse(path, "neurons file with an `acts` tensor", width, path)


# --------------------------------------------------------------------------- streaming statistics


@dataclass
class Centred:
    """A chunk of real neurons centred on its own means, once for every arm that meets it."""

    centred: object
    """torch [n, N] float32."""
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, R: np.ndarray) -> Centred:
        import torch

        R = torch.from_numpy(R)
        mu = R.mean(0)
        Rc = R - mu
        return cls(Rc, mu.double().numpy(), (Rc * Rc).sum(0).double().numpy())


@dataclass
class Moments:
    """Means, variances and the cross co-moments of synthetic (S) and real (R) neurons, merged
    chunk by chunk with Chan et al.'s parallel update: each chunk is centred on its own means
    before its float32 product, so no large sum cancels (float64 across chunks)."""

    M: int
    N: int
    n: int = 0
    mean_s: np.ndarray = field(init=False)
    mean_r: np.ndarray = field(init=False)
    m2_s: np.ndarray = field(init=False)
    m2_r: np.ndarray = field(init=False)
    c: np.ndarray = field(init=False)

    def __post_init__(self):
        self.mean_s, self.m2_s = np.zeros(self.M), np.zeros(self.M)
        self.mean_r, self.m2_r = np.zeros(self.N), np.zeros(self.N)
        self.c = np.zeros((self.M, self.N))

    def add(self, S: np.ndarray, R: Centred) -> None:
        """Fold in a chunk: S [n, M] float32, and the real neurons of the same rows, centred."""
        import torch

        nb = len(S)
        if nb == 0:
            return
        S = torch.from_numpy(S)
        mu_s = S.mean(0)  # torch's float sums are cascaded: accurate in float32
        Sc = S - mu_s
        cb = (Sc.T @ R.centred).double().numpy()
        m2s = (Sc * Sc).sum(0).double().numpy()
        mu_s = mu_s.double().numpy()
        n = self.n + nb
        ds, dr = mu_s - self.mean_s, R.mean - self.mean_r
        w = self.n * nb / n
        self.c += cb + w * np.outer(ds, dr)
        self.m2_s += m2s + w * ds * ds
        self.m2_r += R.m2 + w * dr * dr
        self.mean_s += ds * nb / n
        self.mean_r += dr * nb / n
        self.n = n

    def corr(self) -> np.ndarray:
        """[M, N] Pearson correlations; NaN where a neuron never varies (dead)."""
        sd_s, sd_r = np.sqrt(self.m2_s), np.sqrt(self.m2_r)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = self.c / np.outer(sd_s, sd_r)
        tiny_s = sd_s <= 1e-6 * max(float(sd_s.max()), 1e-30)
        tiny_r = sd_r <= 1e-6 * max(float(sd_r.max()), 1e-30)
        out[tiny_s] = np.nan
        out[:, tiny_r] = np.nan
        return np.clip(out, -1.0, 1.0)


@dataclass
class Moves:
    """How far each feature moves each neuron: the least-squares slope of the neuron's
    activation on the feature's (zeros included, over the compared rows) times the feature's
    typical activation where it fires. One rule for real and synthetic neurons alike, in the
    neuron's own units, for sparse and dense features."""

    F: int
    M: int
    n: int = 0
    fires: np.ndarray = field(init=False)
    sx: np.ndarray = field(init=False)
    sxx: np.ndarray = field(init=False)
    total: np.ndarray = field(init=False)
    sxh: np.ndarray = field(init=False)

    def __post_init__(self):
        self.fires, self.sx, self.sxx = np.zeros(self.F), np.zeros(self.F), np.zeros(self.F)
        self.total, self.sxh = np.zeros(self.M), np.zeros((self.F, self.M))

    def add(self, X, H: np.ndarray) -> None:
        """Fold in a chunk: X the features as a sparse [n, F] matrix (features.sparse_rows), H [n, M]."""
        self.sxh += X.T @ H  # float32 within a chunk, float64 across
        self.fires += X.getnnz(0)
        self.sx += np.asarray(X.sum(0), dtype=np.float64).ravel()
        self.sxx += np.asarray(X.multiply(X).sum(0), dtype=np.float64).ravel()
        self.total += H.sum(0, dtype=np.float64)
        self.n += X.shape[0]

    def moves(self) -> np.ndarray:
        """[F, M]; 0 for a feature that fires in fewer than MIN_FIRES rows or never varies."""
        n = max(self.n, 1)
        mx = self.sx / n
        var = self.sxx / n - mx * mx
        cov = self.sxh / n - mx[:, None] * (self.total / n)[None, :]
        ok = (self.fires >= MIN_FIRES) & (var > 1e-12 * np.maximum(self.sxx / n, 1e-30))
        with np.errstate(invalid="ignore", divide="ignore"):
            out = cov / var[:, None] * (self.sx / np.maximum(self.fires, 1))[:, None]
        return np.where(ok[:, None], out, 0.0)


# --------------------------------------------------------------------------- the arms


@dataclass
class Arm:
    """One set of neurons correlated with the real ones: the trained Squeezer, or a baseline draw."""

    kind: str
    """squeezer, random (a fresh initialisation), shuffled (tokens permuted in each shard), rotated, or
    decoder (the SAE's own reconstruction of the neurons: the ceiling)."""
    draw: int = 0
    moments: Moments | None = None
    moves: Moves | None = None
    encoder: Encoder | None = None
    """The decoder arm's own neurons (the others share the trained Squeezer's or a random draw's)."""


@dataclass
class Encoder:
    """A Squeezer's neurons as the comparison computes them: h = act(Σ_f x_f W_enc[f] + b_enc),
    one embedding_bag over each row's k stored features."""

    W: object
    """torch [F, M] float32."""
    b: object
    """torch [M]."""
    relu: bool

    @classmethod
    def of(cls, weights: dict, neuron_act: str) -> Encoder:
        import torch

        return cls(torch.as_tensor(np.array(weights["W_enc"], dtype=np.float32)),
                   torch.as_tensor(np.array(weights["b_enc"], dtype=np.float32)), neuron_act == "relu")

    @classmethod
    def random(cls, F: int, M: int, neuron_act: str, seed: int) -> Encoder:
        """A Squeezer as `codec squeeze` initialises it (nn.squeezer), untrained."""
        from codec_cli.nn.squeezer import Squeezer

        fresh = Squeezer(F, M, neuron_act=neuron_act, seed=seed).weights(0)
        return cls.of({k: v.numpy() for k, v in fresh.items()}, neuron_act)

    def __call__(self, idx: np.ndarray, val: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            h = torch.nn.functional.embedding_bag(torch.from_numpy(idx), self.W, mode="sum",
                                                  per_sample_weights=torch.from_numpy(val)).add_(self.b)
            return (h.relu_() if self.relu else h).numpy()


def rotation(M: int, seed: int, draw: int) -> np.ndarray:
    """Draw `draw`'s random orthogonal M × M matrix (Haar-distributed, scipy's ortho_group)."""
    from scipy.stats import ortho_group

    return ortho_group.rvs(M, random_state=np.random.default_rng([seed, 2, draw])).astype(np.float32)


def accumulate(rows: Rows, arms: list[Arm], trained: Encoder, make_random, seed: int, keep: dict | None) -> None:
    """One pass over the rows, filling every arm's moments (and moves where asked). Each pass
    makes its own draws' random encoders and rotations, so memory holds one pass's."""
    F, M = trained.W.shape
    randoms = {a.draw: make_random(a.draw) for a in arms if a.kind == "random"}
    rotations = {a.draw: rotation(M, seed, a.draw) for a in arms if a.kind == "rotated"}
    moving = keep is not None or any(a.moves is not None for a in arms)
    for piece, (idx, val, R) in enumerate(rows):
        X = sparse_rows(idx, val, F) if moving else None
        idx = np.maximum(idx, 0)  # an empty slot holds 0: any index adds nothing
        S = trained(idx, val)
        Rc = Centred.of(R)
        if keep is not None:  # rows for the scatter plots, spread over the pieces
            take = np.random.default_rng([seed, piece]).permutation(len(S))[:keep["per_piece"]]
            keep["S"].append(S[take])
            keep["R"].append(R[take])
        for a in arms:
            if a.kind == "squeezer":
                H = S
            elif a.kind == "random":
                H = randoms[a.draw](idx, val)
            elif a.kind == "decoder":
                H = a.encoder(idx, val)
            elif a.kind == "shuffled":
                H = S[np.random.default_rng([seed, 1, a.draw, piece]).permutation(len(S))]
            else:
                H = S @ rotations[a.draw]
            a.moments.add(H, Rc)
            if a.moves is not None:
                a.moves.add(X, H)
        if keep is not None:
            keep["real"].add(X, R)


def match(corr: np.ndarray, sign_free: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one-to-one matching maximising the summed correlation (|correlation| for linear
    neurons, whose sign means nothing): (synthetic, real, score) per matched pair. A dead
    neuron (NaN) scores 0 in the matching and NaN in the result."""
    from scipy.optimize import linear_sum_assignment

    score = np.abs(corr) if sign_free else corr
    s, r = linear_sum_assignment(np.nan_to_num(score, nan=0.0), maximize=True)
    return s, r, score[s, r]


def mean_matched(corr: np.ndarray, sign_free: bool) -> float:
    _, _, v = match(corr, sign_free)
    return float(np.nan_to_num(v, nan=0.0).mean()) if len(v) else math.nan


# --------------------------------------------------------------------------- roommates


def roommates(drive: np.ndarray, relative: float) -> np.ndarray:
    """[F, M] drives normalised by each neuron's largest, zero where a feature is not a roommate:
    it moves the neuron by at least `relative` of the most any feature does (packing.members)."""
    from codec_plugins.packing import members

    drive = np.maximum(drive, 0.0)
    f, n, d = members(drive, relative, 0.0)
    out = np.zeros_like(drive)
    top = drive.max(0)
    out[f, n] = d / top[n]
    return out


def overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column pair (a[:, i], b[:, i]): Jaccard of the roommate sets, and the weighted
    Jaccard Σ min / Σ max of the normalised drives. NaN where both sets are empty."""
    A, B = a > 0, b > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        jac = (A & B).sum(0) / (A | B).sum(0)
        wj = np.minimum(a, b).sum(0) / np.maximum(a, b).sum(0)
    return jac, wj


def cycle(n: int, rng) -> np.ndarray:
    """A random cyclic permutation (Sattolo's algorithm): no element stays in place."""
    p = np.arange(n)
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(i))
        p[i], p[j] = p[j], p[i]
    return p


def chance_overlaps(a: np.ndarray, b: np.ndarray, s_idx, r_idx, rng, draws: int) -> tuple[float, float]:
    """The mean (weighted) Jaccard of random pairings: each synthetic neuron of a matched pair
    beside the real neuron of another pair, never its own partner."""
    j, w = [], []
    for _ in range(draws):
        other = r_idx[cycle(len(r_idx), rng)] if len(r_idx) > 1 else r_idx
        jd, wd = overlaps(a[:, s_idx], b[:, other])
        j.append(nanmean(jd))
        w.append(nanmean(wd))
    return nanmean(j), nanmean(w)


def neuron_sae(features):
    """(W_dec [F, N], b_dec [N]) of the features' SAE where it reads the real neurons' own hook,
    so that its decoder rows are in the neuron basis; None otherwise (or where it cannot be
    reopened, with a note)."""
    from codec_cli.sources import models

    if features.attrs.get("hook") != features.attrs.get("neurons"):
        return None
    try:
        handle, _ = models.reopen_sae(features)
    except BadInput as e:
        info(f"compare: note: the SAE's decoder is left out (roommates by weights, the ceiling): {e}")
        return None
    sae = handle.sae
    return sae.W_dec.detach().double().cpu().numpy(), sae.b_dec.detach().double().cpu().numpy()


def weight_rule(sq, features, W_dec, relative: float, s_idx, r_idx, rng, draws: int) -> dict:
    """Roommates read from weights instead of activations: a synthetic neuron's from the
    Squeezer's codes (packing.Packing.drive), a real neuron's from the SAE's decoder rows in
    the neuron basis: feature f moves neuron n by a_f · W_dec[f, n], a_f its mean activation."""
    from codec_plugins.packing import open_packing

    typical = features.table("features.parquet", ["feature", "mean"]).sort("feature")["mean"].to_numpy()
    syn = roommates(open_packing(sq).drive(), relative)
    real = roommates(typical[:, None] * W_dec, relative)
    jac, wjac = overlaps(syn[:, s_idx], real[:, r_idx])
    cj, cw = chance_overlaps(syn, real, s_idx, r_idx, rng, draws)
    return {"synthetic_per_neuron": float((syn > 0).sum(0).mean()), "real_per_neuron": float((real > 0).sum(0).mean()),
            "jaccard": nanmean(jac), "jaccard_chance": cj, "weighted_jaccard": nanmean(wjac),
            "weighted_jaccard_chance": cw}


def nanmean(x) -> float | None:
    x = np.asarray(x, dtype=float)
    return float(np.nanmean(x)) if np.isfinite(x).any() else None


def or_gate_degrees(occ, drives: np.ndarray, window: int, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each neuron's OR-gate degree over its roommates (or_gate.degree: the drive-weighted share
    of roommate pairs that avoid each other), and the mean degree of `draws` null neurons with
    the same drives on frequency-matched features drawn from outside its roommates. `occ`: the
    features' co-occurrences (cooccurrence.occurrences) in blocks of `window` tokens."""
    from codec_plugins.or_gate import Matcher, Params, degree

    p = Params(window=window)
    matcher = Matcher(occ.counts, occ.counts > 0, p.bins, np.random.default_rng(seed))
    M = drives.shape[1]
    real, null = np.full(M, np.nan), np.full(M, np.nan)
    for i in range(M):
        feats = np.flatnonzero(drives[:, i] > 0)
        if len(feats) < 2:
            continue
        order = np.argsort(-drives[feats, i], kind="stable")[:p.max_roommates]
        feats = feats[order]
        d = drives[feats, i]
        real[i], _ = degree(occ, feats, d, p)
        null[i] = nanmean([degree(occ, matcher.like(feats, avoid=feats), d, p)[0] for _ in range(draws)])
    return real, null


# --------------------------------------------------------------------------- the stage


@talk.reports
def compare_neurons(cfg: CompareNeuronsConfig) -> dict:
    """Compare a squeezer's neurons with the real ones its features hold; write `cfg.out`."""
    check_output(cfg.out, "comparison")
    check_not_an_input(cfg.out, [cfg.squeezer] + ([cfg.features] if cfg.features else []))
    sq, features = open_inputs(cfg)
    w = sq.tensors("weights.safetensors")
    rows = compared_rows(cfg, sq, features, w)
    F, M = w["W_enc"].shape
    act = str(sq.attrs.get("neuron_act", "linear"))
    sign_free = act == "linear"
    if not rows.pieces:
        raise BadInput(f"{features.path}: no rows to compare")
    N = neuron_width(features, rows.pieces[0].shard)
    if N != M and not cfg.allow_partial:
        raise BadInput(f"{sq.path} has {M} synthetic neurons but {features.path} holds {N} real ones at "
                       f"{features.attrs['neurons']}", hint=f"squeeze with --m {N}, or pass --allow-partial to match "
                                                           f"the {min(M, N)} that can be")
    trained = Encoder.of(w, act)

    def make_random(draw: int):
        return Encoder.random(F, M, act, cfg.seed + 1 + draw)

    rng = np.random.default_rng(cfg.seed)
    kinds = ["random", "shuffled"] + (["rotated"] if sign_free else [])
    decoder = neuron_sae(features)
    arms = [Arm("squeezer", 0, Moments(M, N), Moves(F, M))]
    if decoder is not None:  # the ceiling: the SAE's own reconstruction of the neurons, read as a Squeezer
        # x W_dec + b_dec in the Squeezer's input units (x / scale), ReLU'd as the neurons are.
        reading = Encoder.of({"W_enc": decoder[0] * rows.scale[:, None], "b_enc": decoder[1]}, "relu")
        arms.append(Arm("decoder", 0, Moments(N, N), encoder=reading))
    arms += [Arm(k, d, Moments(M, N), Moves(F, M) if (k == "random" and d == 0) else None)
             for k in kinds for d in range(cfg.draws)]
    per_arm = 8 * M * N + 8 * F * M + 4 * M * M  # co-moments, a random draw's weights or moves, a rotation
    per_pass = max(1, BUDGET // per_arm)
    passes = [arms[i:i + per_pass] for i in range(0, len(arms), per_pass)]
    real_moves = Moves(F, N)
    keep = {"per_piece": max(1, SCATTER_ROWS // max(len(rows.pieces), 1)), "S": [], "R": [], "real": real_moves}
    info(f"compare: {rows.n:,} rows ({cfg.rows}), {M} synthetic × {N} real neurons at {features.attrs['neurons']}, "
         f"{sum(a.kind in kinds for a in arms)} baseline draws in {len(passes)} pass{'es' if len(passes) > 1 else ''}")
    with progress("compare", len(passes), unit="passes") as bar:
        for k, group in enumerate(passes):
            accumulate(rows, group, trained, make_random, cfg.seed, keep if k == 0 else None)
            bar.update(completed=k + 1)

    corr = arms[0].moments.corr()
    s_idx, r_idx, matched = match(corr, sign_free)
    observed = float(np.nan_to_num(matched, nan=0.0).mean())
    null = {k: np.array([mean_matched(a.moments.corr(), sign_free) for a in arms if a.kind == k]) for k in kinds}

    # Roommates by one rule on both sides, and their overlap for matched pairs beside chance.
    syn_room = roommates(arms[0].moves.moves(), cfg.relative)
    real_room = roommates(real_moves.moves(), cfg.relative)
    jac, wjac = overlaps(syn_room[:, s_idx], real_room[:, r_idx])
    chance_j, chance_w = chance_overlaps(syn_room, real_room, s_idx, r_idx, rng, cfg.draws)
    random0 = next(a for a in arms if a.kind == "random")
    rs, rr, random_matched = match(random0.moments.corr(), sign_free)
    rand_room = roommates(random0.moves.moves(), cfg.relative)
    rand_j, rand_w = overlaps(rand_room[:, rs], real_room[:, rr])
    by_weights = None if decoder is None else weight_rule(sq, features, decoder[0], cfg.relative, s_idx, r_idx, rng,
                                                          cfg.draws)
    ceiling = next((mean_matched(a.moments.corr(), False) for a in arms if a.kind == "decoder"), None)
    from codec_plugins.cooccurrence import occurrences

    occ = occurrences(features, cfg.window, 0.0)
    nulls = min(cfg.draws, NULL_NEURONS)
    deg_syn, deg_syn_null = or_gate_degrees(occ, syn_room, cfg.window, nulls, cfg.seed)
    deg_real, deg_real_null = or_gate_degrees(occ, real_room, cfg.window, nulls, cfg.seed)

    best_r = np.nanargmax(np.nan_to_num(np.abs(corr) if sign_free else corr, nan=-np.inf), axis=1)
    table = matches_table(corr, s_idx, r_idx, matched, best_r, syn_room, real_room, jac, wjac, deg_syn, deg_real,
                          arms[0].moves.total / max(rows.n, 1), real_moves.total / max(rows.n, 1))
    matched_deg = np.isfinite(deg_syn[s_idx]) & np.isfinite(deg_real[r_idx])
    p_shuffled, p_random = (float((1 + (null[k] >= observed).sum()) / (1 + len(null[k])))
                            for k in ("shuffled", "random"))
    finite = np.nan_to_num(matched, nan=0.0)
    stat = lambda x: {"mean": float(np.mean(x)), "sd": float(np.std(x)), "draws": len(x)}  # noqa: E731
    summary = {
        "rows": rows.n, "rows_compared": cfg.rows, "synthetic_neurons": M, "real_neurons": N,
        "real_hook": features.attrs["neurons"], "matched": len(s_idx),
        "basis": "arbitrary (linear neurons; matched on |correlation|)" if sign_free
        else "privileged (ReLU neurons)",
        "dead": {"synthetic": int(np.isnan(corr).all(1).sum()), "real": int(np.isnan(corr).all(0).sum())},
        "matched_correlation": observed,
        "matched_correlation_quantiles": {q: float(np.quantile(finite, v)) for q, v in
                                          (("min", 0), ("q10", .1), ("median", .5), ("q90", .9), ("max", 1))},
        "best_correlation": nanmean(corr[np.arange(M), best_r]),
        "chance": {k: stat(v) for k, v in null.items()},
        "ceiling": ceiling,
        "p_value": p_shuffled, "p_value_random": p_random,
        "roommates": {"rule": f"moves the neuron by ≥ {cfg.relative} × the most any feature does (slope × typical "
                              f"activation; features firing ≥ {MIN_FIRES} times)",
                      "synthetic_per_neuron": float((syn_room > 0).sum(0).mean()),
                      "real_per_neuron": float((real_room > 0).sum(0).mean()),
                      "jaccard": nanmean(jac), "jaccard_chance": chance_j,
                      "jaccard_random_squeezer": nanmean(rand_j),
                      "weighted_jaccard": nanmean(wjac), "weighted_jaccard_chance": chance_w,
                      "weighted_jaccard_random_squeezer": nanmean(rand_w),
                      "by_weights": by_weights},
        "or_gate": {"window": cfg.window, "degree_synthetic": nanmean(deg_syn), "degree_real": nanmean(deg_real),
                    "degree_synthetic_chance": nanmean(deg_syn_null), "degree_real_chance": nanmean(deg_real_null),
                    "matched_degree_correlation": (float(np.corrcoef(deg_syn[s_idx][matched_deg],
                                                                     deg_real[r_idx][matched_deg])[0, 1])
                                                   if matched_deg.sum() > 2 else None)}}
    sample = (np.concatenate(keep["S"]), np.concatenate(keep["R"])) if keep["S"] else None
    with ArtifactWriter(cfg.out, "comparison", command="codec compare neurons", params=config.to_dict(cfg),
                        inputs=[sq, features],
                        attrs={"compare": "neurons", "synthetic_neurons": M, "real_neurons": N,
                               "real_hook": features.attrs["neurons"], "rows": rows.n,
                               "matched_correlation": observed}) as out:
        out.write_table("matches.parquet", table)
        out.write_tensors("correlations.safetensors", {"correlation": corr.astype(np.float32)})
        out.write_table("roommates.parquet", pl.concat([roommates_table(side, R) for side, R in
                                                        (("synthetic", syn_room), ("real", real_room))]))
        out.write_json("summary.json", summary)
        for name, fig in figures(corr, s_idx, r_idx, matched, random_matched, null, observed, ceiling, sample,
                                 sign_free).items():
            out.write_figure(f"{name}.png", fig)
    info(f"compare: matched correlation {observed:.3f} (random Squeezer {null['random'].mean():.3f}, "
         f"shuffled tokens {null['shuffled'].mean():.3f}, p = {p_shuffled:.3g})")
    return summary


def matches_table(corr, s_idx, r_idx, matched, best_r, syn_room, real_room, jac, wjac, deg_syn, deg_real,
                  mean_syn, mean_real) -> pl.DataFrame:
    """matches.parquet: one row per synthetic neuron; a matched pair's columns are null where it has no partner."""
    M = corr.shape[0]

    def per_synthetic(values, dtype=pl.Float64):  # a value per matched pair, laid out by synthetic neuron
        out = np.full(M, np.nan)
        out[s_idx] = values
        return pl.Series(out, nan_to_null=True).cast(dtype)

    return pl.DataFrame({
        "synthetic": np.arange(M, dtype=np.int32), "real": per_synthetic(r_idx, pl.Int32),
        "correlation": per_synthetic(matched), "best_real": best_r.astype(np.int32),
        "best_correlation": pl.Series(corr[np.arange(M), best_r], nan_to_null=True),
        "roommates_synthetic": (syn_room > 0).sum(0).astype(np.int32),
        "roommates_real": per_synthetic((real_room[:, r_idx] > 0).sum(0), pl.Int32),
        "jaccard": per_synthetic(jac), "weighted_jaccard": per_synthetic(wjac),
        "degree_synthetic": pl.Series(deg_syn, nan_to_null=True), "degree_real": per_synthetic(deg_real[r_idx]),
        "mean_synthetic": mean_syn.astype(np.float32), "mean_real": per_synthetic(mean_real[r_idx], pl.Float32)})


def roommates_table(side: str, drives: np.ndarray) -> pl.DataFrame:
    """roommates.parquet rows of one side: each (neuron, feature) it carries, with its normalised drive."""
    f, n = np.nonzero(drives)
    order = np.lexsort((f, n))
    f, n = f[order], n[order]
    return pl.DataFrame({"side": [side] * len(f), "neuron": n.astype(np.int32), "feature": f.astype(np.int32),
                         "drive": drives[f, n].astype(np.float32)})


# --------------------------------------------------------------------------- figures


def figures(corr, s_idx, r_idx, matched, random_matched, null, observed, ceiling, sample, sign_free) -> dict:
    from matplotlib.figure import Figure

    out = {}
    order = np.argsort(-np.nan_to_num(matched, nan=-2), kind="stable")[:256]
    fig = Figure(figsize=(6.4, 5.6))
    ax = fig.subplots()
    shown = corr[np.ix_(s_idx[order], r_idx[order])]
    im = ax.imshow(np.nan_to_num(shown), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, label="correlation")
    ax.set(xlabel="real neuron (its partner's order)", ylabel="synthetic neuron (by matched correlation)",
           title=f"Correlations; matched pairs on the diagonal\n({len(order)} best pairs shown)")
    fig.tight_layout()
    out["correlations"] = fig

    fig = Figure(figsize=(10, 4))
    a, b = fig.subplots(1, 2)
    bins = np.linspace(-1 if sign_free else -0.2, 1, 41)
    a.hist(np.nan_to_num(random_matched), bins=bins, color="C1", alpha=0.6, label="a random-init Squeezer")
    a.hist(np.nan_to_num(matched), bins=bins, color="C0", alpha=0.8, label="trained Squeezer")
    a.set(xlabel="matched correlation", ylabel="pairs", title="Per matched pair")
    a.legend()
    colors = {"random": "C1", "shuffled": "C2", "rotated": "C3"}
    labels = {"random": "random-init Squeezers", "shuffled": "shuffled tokens", "rotated": "rotated neurons"}
    for k, v in null.items():
        b.hist(v, bins=30, color=colors[k], alpha=0.7, label=labels[k])
    b.axvline(observed, color="C0", lw=2, label=f"trained: {observed:.3f}")
    if ceiling is not None:
        b.axvline(ceiling, color="k", lw=1, ls="--", label=f"the SAE's own reconstruction: {ceiling:.3f}")
    b.set(xlabel="mean matched correlation", ylabel="draws", title="Against chance (same matching rule)")
    b.legend(fontsize=8)
    fig.tight_layout()
    out["baselines"] = fig

    if sample is not None and len(order):
        S, R = sample
        picks = order[np.unique(np.linspace(0, len(order) - 1, 4).round().astype(int))]
        fig = Figure(figsize=(3.2 * len(picks), 3.2))
        axes = np.atleast_1d(fig.subplots(1, len(picks)))
        for ax, i in zip(axes, picks):
            ax.scatter(R[:, r_idx[i]], S[:, s_idx[i]], s=3, alpha=0.3)
            ax.set(xlabel=f"real neuron {r_idx[i]}", ylabel=f"synthetic neuron {s_idx[i]}",
                   title=f"r = {matched[i]:.2f}")
        fig.tight_layout()
        out["pairs"] = fig
    return out
