"""The `toy` world: Anthropic's toy model of superposition.

Elhage et al. 2022, "Toy Models of Superposition" (transformer-circuits.pub). n sparse
features x ∈ R^n are squeezed through m < n hidden dimensions and read back out with
the same weights:

    h  = W x                  W ∈ R^{m×n}, column W_i is feature i's direction
    x' = ReLU(Wᵀ h + b)

With `privileged`, the hidden layer is h = ReLU(W x), the paper's §"Superposition in a
privileged basis": its m dimensions are then neurons, which can no longer be rotated
freely, and features that never co-occur can share one (an OR-gate) at no cost.

trained to minimise the importance-weighted squared error. When features are dense
the model keeps the m most important ones and drops the rest (like PCA); as they get
sparser it packs more features than dimensions into geometric shapes — antipodal
pairs, triangles, pentagons — because the ReLU filters out the small interference
that rarely co-firing features cause each other.

Training follows the paper's notebook: xavier-normal W, zero b, AdamW(lr=1e-3, default
weight decay) at a constant rate, batches of 1024 for 10k steps, several independent
instances trained side by side. Because the ground truth (W, b and the features of
every sample) is known exactly, every analysis codec runs on this world can be checked
against the answer.

What a rebuild reproduces (docs/worlds.md). `build` trains on the CPU on one thread,
whatever thread count the caller set, so on one machine, with the same versions of codec,
torch and sae-lens, the same config writes the same bytes. On another CPU the float
kernels (AVX-512, AVX2, ARM; MKL or another BLAS) round differently and training carries
the differences along: from AVX-512 to AVX2 kernels the model's W moved by about 3e-7 and
the trained SAE's weights by about 4e-3. The samples themselves are the same everywhere.
tests/e2e/test_world.py holds a rebuild to stated tolerances of the shipped world, never to
its bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import torch
from safetensors.torch import load_file
from transformer_lens.hook_points import HookedRootModule, HookPoint

from codec_cli import config as configs
from codec_cli.config import SAETrainConfig
from codec_cli.errors import BadInput
from codec_cli.nn import sae as saes
from codec_cli.sources.models import torch_threads
from codec_cli.talk import progress

# The evaluation batch that picks the best instance comes from its own generator, so
# it never overlaps the training stream and does not shift when `steps` changes.
_EVAL_SEED_OFFSET = 1_000_003
_EVAL_SAMPLES = 1 << 14
_REPORT_EVERY = 500

Groups = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class ToyConfig:
    """A toy model of superposition: its data distribution and training recipe."""

    n_features: int = 5
    """Number of true features n."""
    n_hidden: int = 2
    """Number of hidden dimensions m the features are squeezed into."""
    sparsity: float = 0.95
    """Sparsity S: each feature is zero with probability S, else uniform on [0, 1]."""
    importance_decay: float = 1.0
    """Importance of feature i is decay**i (1.0: all features equally important)."""
    exclusive_groups: Groups = ()
    """Groups of mutually exclusive features: at most one member fires per sample, each still
    with probability 1−S (so a group of k needs k·(1−S) ≤ 1)."""
    cooccur_groups: Groups = ()
    """Groups of co-occurring features: a group fires as a unit with probability 1−S, each
    member with its own value."""
    privileged: bool = False
    """ReLU hidden neurons, h = ReLU(W x) (Elhage et al.'s privileged basis), instead of h = W x."""
    seed: int = 0
    """Seed for the initial weights, the training data and the evaluation batch."""
    steps: int = 10_000
    """Optimiser steps."""
    batch_size: int = 1024
    """Samples per step, per instance."""
    lr: float = 1e-3
    """AdamW learning rate (constant)."""
    n_instances: int = 8
    """Independent models trained in parallel; the one with the lowest loss is kept."""

    def __post_init__(self) -> None:
        # Configs read back from JSON carry lists; store tuples so the config stays hashable.
        for name in ("exclusive_groups", "cooccur_groups"):
            object.__setattr__(self, name, tuple(tuple(int(i) for i in g) for g in getattr(self, name)))
        configs.check(self, positive=("n_features", "n_hidden", "steps", "batch_size", "n_instances",
                                      "importance_decay", "lr"))
        if not 0.0 <= self.sparsity < 1.0:
            raise BadInput(f"toy: sparsity must be in [0, 1), got {self.sparsity}")
        if self.seed < 0:
            raise BadInput(f"toy: seed must be non-negative, got {self.seed}")
        seen: set[int] = set()
        for kind, groups in (("exclusive", self.exclusive_groups), ("cooccur", self.cooccur_groups)):
            for g in groups:
                where = f"toy: {kind} group {list(g)}"
                if len(g) < 2:
                    raise BadInput(f"{where} needs at least two features")
                if not all(0 <= i < self.n_features for i in g):
                    raise BadInput(f"{where} has features out of range 0..{self.n_features - 1}")
                if seen & set(g) or len(set(g)) < len(g):
                    raise BadInput(f"{where} repeats a feature; feature groups must be disjoint")
                seen |= set(g)
                # Each member keeps its firing probability 1-S only if the members' shares fit in 1.
                if kind == "exclusive" and len(g) * (1 - self.sparsity) > 1 + 1e-9:
                    raise BadInput(f"{where} needs sparsity >= {1 - 1 / len(g):.3g}, got {self.sparsity}")


@dataclass(frozen=True, eq=False)
class ToyModel:
    """The trained model: the best instance's weights, with every instance's loss."""

    config: ToyConfig
    W: torch.Tensor
    """[n_hidden, n_features]; column i is feature i's direction."""
    b: torch.Tensor
    """[n_features] output bias."""
    loss: float
    """Evaluation loss of the kept instance."""
    losses: tuple[float, ...]
    """Evaluation loss of every instance, in training order."""

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """h = W x (ReLU(W x) when privileged) for a batch x of shape [batch, n_features]."""
        h = x @ self.W.T
        return h.relu() if self.config.privileged else h

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x' = ReLU(Wᵀ W x + b)."""
        return torch.relu(self.hidden(x) @ self.W + self.b)


def importance(cfg: ToyConfig) -> torch.Tensor:
    """Per-feature loss weight decay**i, shape [n_features]."""
    return cfg.importance_decay ** torch.arange(cfg.n_features, dtype=torch.float32)


def sample(cfg: ToyConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    """n samples of the features, float32 [n, n_features].

    An active feature takes a value uniform on [0, 1]; an inactive one is 0. Every feature
    is active with marginal probability 1−S, whatever group it is in:
    - ungrouped features fire independently;
    - a co-occurring group fires as a unit with probability 1−S (each member still
      draws its own value), independently of everything else;
    - an exclusive group of k members fires exactly one member, chosen uniformly, with
      probability k(1−S), else none (ToyConfig rejects groups with k(1−S) > 1).
    """
    return _sample_by_feature(cfg, n, generator).T.contiguous()


def _sample_by_feature(cfg: ToyConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    """`sample`, transposed: [n_features, n], the layout training wants.

    One uniform draw u per feature and sample. A feature fires when floor(u_lead / p)
    equals its slot, where u_lead is the draw of its group's first member (its own when
    ungrouped): slot 0 for ungrouped and co-occurring features, so they fire when
    u_lead < p; slot k for the k-th member of an exclusive group, so the members split
    [0, k·p) into slices of width p. Within its slice the draw is again uniform and gives
    the value; non-first co-occurring members take their own draw instead, unused so far.
    """
    p = 1.0 - cfg.sparsity
    lead = list(range(cfg.n_features))
    slot = [0.0] * cfg.n_features
    own = [False] * cfg.n_features
    for g in cfg.exclusive_groups:
        for k, i in enumerate(g):
            lead[i], slot[i] = g[0], float(k)
    for g in cfg.cooccur_groups:
        for i in g[1:]:
            lead[i], own[i] = g[0], True
    # Features-major with per-feature constants as columns: every elementwise op runs
    # along long contiguous rows, and there is no Python loop over groups per batch.
    u = torch.rand(cfg.n_features, n, generator=generator)
    scaled = u.index_select(0, torch.tensor(lead)) / p
    pick = scaled.floor()
    value = torch.where(torch.tensor(own).unsqueeze(1), u, scaled - pick)
    return value * (pick == torch.tensor(slot).unsqueeze(1))


def _loss(W: torch.Tensor, b: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, privileged: bool = False
          ) -> torch.Tensor:
    """Importance-weighted squared error, mean over batch and features, per instance: [I].

    W [I, m, n], b [I, n], x [I, n, batch]. Features-major keeps the batch as the long
    axis of every product: with n≈5 as the inner axis instead, CPU batched matmul ran
    several times slower in our runs as soon as torch used more than one thread.
    """
    h = W @ x
    if privileged:
        h = h.relu()
    x_hat = torch.relu(W.mT @ h + b.unsqueeze(2))
    # Weighting each feature's batch mean rather than every element costs one small multiply.
    return (((x - x_hat) ** 2).mean(dim=2) * weight).mean(dim=1)


def train(cfg: ToyConfig, on_step: Callable[[int, float], None] | None = None) -> ToyModel:
    """Train cfg.n_instances models at once and keep the one with the lowest evaluation loss.

    on_step(steps_done, loss) is called every few steps and after the last one, with the
    step's training loss averaged over instances. Repeatable on one machine and thread count
    for a given config: one generator seeded with cfg.seed draws the initial weights and every
    training batch (other CPUs' float kernels differ slightly; docs/worlds.md).
    """
    I, m, n = cfg.n_instances, cfg.n_hidden, cfg.n_features
    gen = torch.Generator().manual_seed(cfg.seed)
    # Xavier-normal per [m, n] matrix. (The paper's notebook calls xavier_normal_ on the
    # stacked 3-D tensor, which ties the init scale to the number of instances; per-matrix
    # keeps an instance's init independent of how many siblings it has.)
    W = torch.randn(I, m, n, generator=gen) * math.sqrt(2.0 / (m + n))
    W.requires_grad_()
    b = torch.zeros(I, n, requires_grad=True)
    weight = importance(cfg)
    # The paper's optimiser (default betas, eps and weight decay); `fused` only runs the
    # same update as one kernel, which makes a step of these tiny tensors ~15% cheaper.
    opt = torch.optim.AdamW([W, b], lr=cfg.lr, fused=True)
    for step in range(1, cfg.steps + 1):
        x = _sample_by_feature(cfg, I * cfg.batch_size, gen).view(n, I, cfg.batch_size).transpose(0, 1)
        # Summing keeps each instance's gradient exactly what it would be trained alone.
        loss = _loss(W, b, x, weight, cfg.privileged).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step is not None and (step % _REPORT_EVERY == 0 or step == cfg.steps):
            on_step(step, loss.item() / I)

    eval_gen = torch.Generator().manual_seed(cfg.seed + _EVAL_SEED_OFFSET)
    with torch.no_grad():
        # The same evaluation batch for every instance, so their losses compare fairly; one
        # instance at a time, so that wide models with many instances stay small in memory.
        x = _sample_by_feature(cfg, _EVAL_SAMPLES, eval_gen).unsqueeze(0)
        losses = torch.cat([_loss(W[i : i + 1], b[i : i + 1], x, weight, cfg.privileged) for i in range(I)])
    best = int(torch.argmin(losses))
    return ToyModel(
        config=cfg,
        W=W[best].detach().clone(),
        b=b[best].detach().clone(),
        loss=float(losses[best]),
        losses=tuple(float(v) for v in losses),
    )


def feature_dimensionality(W: torch.Tensor) -> torch.Tensor:
    """D_i = ||W_i||² / Σ_j (Ŵ_i·W_j)² for each column W_i of W [m, n]; shape [n].

    The fraction of a hidden dimension feature i gets: 1 for a dedicated direction, 1/2
    for an antipodal pair, 2/5 for a pentagon, 0 for a zero column (a dropped feature).
    """
    norms = W.norm(dim=0)
    nonzero = norms > 0
    interference = (((W / torch.where(nonzero, norms, 1.0)).T @ W) ** 2).sum(dim=1)
    # A nonzero column's sum includes its own ||W_i||² > 0; only a zero column needs a guard.
    return norms**2 / torch.where(nonzero, interference, 1.0)


def _group_labels(groups: Groups, n: int) -> torch.Tensor:
    """Group index of each feature, -1 where it is in none: int64 [n]."""
    labels = torch.full((n,), -1, dtype=torch.int64)
    for k, g in enumerate(groups):
        labels[list(g)] = k
    return labels


def ground_truth(model: ToyModel, n_samples: int, seed: int) -> dict[str, torch.Tensor]:
    """What the world saves as its answer key, as plain contiguous tensors.

    W [m, n], b [n], importance [n]; exclusive_group and cooccur_group [n] (the index of
    the feature's group, -1 for none); and for n_samples samples drawn with `seed`, the
    true feature activations x [n_samples, n] and hidden activations h [n_samples, m] (ReLU(W x) when privileged).
    """
    cfg = model.config
    x = sample(cfg, n_samples, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        h = model.hidden(x)
    return {
        "W": model.W.contiguous(),
        "b": model.b.contiguous(),
        "importance": importance(cfg),
        "exclusive_group": _group_labels(cfg.exclusive_groups, cfg.n_features),
        "cooccur_group": _group_labels(cfg.cooccur_groups, cfg.n_features),
        "x": x.contiguous(),
        "h": h.contiguous(),
    }


# --------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class Config(ToyConfig):
    """The `toy` world: a toy model plus the two SAEs codec ships with it (seed 002's 10-5-10)."""

    n_features: int = 10
    """Number of true features n."""
    n_hidden: int = 5
    """Number of hidden dimensions m the features are squeezed into."""
    sparsity: float = 0.9
    """Sparsity S: each feature is zero with probability S, else uniform on [0, 1]."""
    sae_expansion: float = 2.0
    """Width of the trained SAE as a multiple of n_hidden (10 latents for 5 hidden dimensions)."""
    sae_k: int = 2
    """Active latents per sample of the trained (TopK) SAE."""
    sae_steps: int = 3000
    """Training steps of the SAE."""
    n_samples: int = 8192
    """Samples the world emits, saved with their true feature activations."""

    def __post_init__(self) -> None:
        super().__post_init__()
        configs.check(self, positive=("sae_k", "sae_steps", "sae_expansion", "n_samples"))
        saes.width(_sae_config(self), self.n_hidden)  # a k wider than the SAE fails now, not after training


class ToyNet(HookedRootModule):
    """The toy model behind transformer-lens's hook interface, so that codec reads it the
    way it reads any model: `hook_in` (x, the true features), `hook_hidden` (h = W x, or
    its ReLU when privileged: then these are the model's own neurons) and `hook_out` (x')."""

    def __init__(self, W: torch.Tensor, b: torch.Tensor, privileged: bool = False):
        super().__init__()
        self.W = torch.nn.Parameter(W.clone())
        self.b = torch.nn.Parameter(b.clone())
        self.privileged = privileged
        self.hook_in, self.hook_hidden, self.hook_out = HookPoint(), HookPoint(), HookPoint()
        self.setup()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hook_in(x) @ self.W.T
        h = self.hook_hidden(h.relu() if self.privileged else h)
        return self.hook_out(torch.relu(h @ self.W + self.b))


LANGUAGE = False
"""The toy world's inputs are feature vectors, not tokens."""


def inputs(cfg: Config, step: int, n: int) -> torch.Tensor:
    """The n samples the world emits at step `step` of a stream: x [n, n_features]."""
    return sample(cfg, n, torch.Generator().manual_seed(cfg.seed * 7919 + step))


def labels(cfg: Config, x: torch.Tensor) -> dict:
    """Ground truth per sample, for extracted features: the true features that are active."""
    # Typed: a batch in which nothing fires would otherwise be a list of nulls, which
    # neither joins the other batches of its shard nor matches the other shards.
    return {"active": pl.Series("active", [row.nonzero().flatten().tolist() for row in x], dtype=pl.List(pl.Int64))}


def round_trip(model: ToyNet, hook: str):
    """The model's own codec for activations at `hook`, or None where there is none to pass.

    At hook_in the activations are the true features themselves: the way the model packs
    them is its whole forward pass, x -> h = W x -> x' = ReLU(Wᵀ h + b) (`codec squeeze`
    compares the Squeezer with it). At hook_hidden the SAE's own decode and encode is it.
    """
    return model if hook == "hook_in" else None


def load_model(path: Path) -> ToyNet:
    weights = load_file(path / "weights.safetensors")
    config = path / "config.json"
    # Worlds built before `privileged` existed have no such key: their hidden layer is linear.
    privileged = bool(json.loads(config.read_text()).get("privileged", False)) if config.is_file() else False
    return ToyNet(weights["W"], weights["b"], privileged)


def _sae_config(cfg: Config):
    return SAETrainConfig(expansion_factor=cfg.sae_expansion, k=cfg.sae_k, steps=cfg.sae_steps,
                          lr=3e-3, batch_size=1024, seed=cfg.seed, checkpoint_every=0)


def _oracle_sae(n: int):
    """An SAE whose latents are the true features themselves: identity weights on hook_in,
    so the Squeezer can be tested apart from any SAE's quality."""
    # Only a build makes one: reading the world's stream or truth should not import sae-lens.
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

    sae = StandardSAE(StandardSAEConfig(d_in=n, d_sae=n, apply_b_dec_to_input=False,
                                        metadata=SAEMetadata(hook_name="hook_in", model_name="codec-toy")))
    with torch.no_grad():
        for p in sae.parameters():
            p.zero_()
        sae.W_enc.copy_(torch.eye(n))
        sae.W_dec.copy_(torch.eye(n))
    return sae


def _match_to_truth(directions: torch.Tensor, W: torch.Tensor) -> float:
    """Mean over true features of the best cosine between W_i and any SAE decoder row."""
    truth = torch.nn.functional.normalize(W.T, dim=1)
    found = torch.nn.functional.normalize(directions, dim=1)
    return float((truth @ found.T).max(dim=1).values.mean())


def build(cfg: Config, w) -> None:
    """Train the toy model and its SAE from scratch and write the world into writer `w`."""
    # One thread, whatever the caller's: the same bytes on this machine every time (other CPUs
    # differ within docs/worlds.md's tolerances), and tiny matrices anyway.
    with torch_threads(1):
        with progress("toy model", cfg.steps, unit="steps") as bar:
            model = train(cfg, on_step=lambda step, loss: bar.update(completed=step))
        truth = ground_truth(model, cfg.n_samples, seed=cfg.seed + 1)
        np = {k: v.numpy() for k, v in truth.items()}
        w.write_tensors("model/weights.safetensors", {"W": np["W"], "b": np["b"]})
        w.write_json("model/config.json", configs.to_dict(cfg))
        w.write_tensors("truth/answer.safetensors", {k: np[k] for k in
                                                     ("W", "b", "importance", "exclusive_group", "cooccur_group")})
        w.write_tensors("truth/samples.safetensors", {"x": np["x"], "h": np["h"]})

        sae_cfg = _sae_config(cfg)

        def batch(step: int) -> torch.Tensor:
            return model.hidden(inputs(cfg, step, sae_cfg.batch_size))

        with progress("toy SAE", sae_cfg.steps, unit="steps") as bar:
            trained, _ = saes.train(sae_cfg, batch, cfg.n_hidden, {"hook_name": "hook_hidden", "model_name": "codec-toy"},
                                    on_step=lambda step, row: bar.update(completed=step))
        saes.save(trained, w.path / "saes" / "trained")
        oracle = _oracle_sae(cfg.n_features)
        saes.save(oracle, w.path / "saes" / "oracle")
        with torch.no_grad():
            sae_metrics = saes.evaluate(trained, truth["h"]) | {
                "match_to_truth": _match_to_truth(trained.W_dec, model.W)}
            oracle_metrics = saes.evaluate(oracle, truth["x"])
        w.write_json("metrics.json", {
            "model": {"loss": model.loss, "instance_losses": list(model.losses),
                      "feature_dimensionality": feature_dimensionality(model.W).tolist()},
            "saes": {"trained": sae_metrics, "oracle": oracle_metrics}})
        w.attrs.update(hooks=["hook_in", "hook_hidden", "hook_out"],
                       saes={"trained": "hook_hidden", "oracle": "hook_in"}, default_sae="trained",
                       n_features=cfg.n_features, n_hidden=cfg.n_hidden)
