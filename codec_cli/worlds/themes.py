"""The `themes` world's language model: a tiny transformer-lens model trained on themes_corpus.py's text.

The model is the subject of the `themes` world: a small but real language model whose
training text has planted structure with a ground-truth table (`corpus.ground_truth`),
so that every analysis codec runs on it, and on SAEs trained on its activations, can
be checked against the answer. It is a standard `HookedTransformer` (two blocks of
attention and a ReLU MLP, LayerNorm, learned positions), so all of transformer-lens
works on it: hooks such as `blocks.1.hook_resid_pre` and `blocks.0.mlp.hook_post`
(the MLP neurons), `run_with_cache`, `to_tokens` on plain text.

The default config trains it to within a fraction of a percent of the corpus's
entropy (`exact_corpus_entropy`, the loss floor of a perfect model), so it must have
learned what themes_corpus.py plants, and a researcher should expect to find inside it:

- themes: the first topic word of a document fixes the topic, and from then on the
  model predicts only that topic's words. Look for attention heads that read earlier
  topic words and residual directions (SAE features) per topic, active over the rest
  of the document.
- cycles: "after X comes", "the day before X is", "two days after X comes" can only be
  completed by knowing the order of the weekdays and months, wrap-around included.
  The days' and months' embeddings are held on circles, each cycle in a plane of its
  own (`cycle_radius`, `cycle_circles`), so the residual stream carries them as the
  circles Engels et al. 2024 found in Mistral and Llama, and an SAE tiles each circle
  with latents that fire on arcs of it.
- exclusive alternatives: a document's one place and one name are repeated, never
  mixed, so the model copies them from context (look for copying heads). Features for
  places (or names) never co-occur, the cheap case for superposition: look for them
  sharing MLP neurons (Elhage et al. 2022).
- the sentence templates themselves: which template the words so far allow, and
  where in it the next word falls.

Training runs on the CPU and is deterministic on one machine: the seed fixes the initial
weights, the corpus seed the data, and `threads` the number of CPU threads it trains on
(whatever the caller set), so with the same versions of codec, torch and sae-lens the
same config writes the same bytes. Another `threads`, or another CPU, whose float kernels
round differently (AVX-512, AVX2, ARM), gives other weights: close to the shipped ones,
not equal, and no test measures by how much. What carries over is what
tests/e2e/test_themes_world.py checks of the shipped world (docs/worlds.md): the loss at the
corpus's entropy, the cycles followed, the SAE's bounds. The default config trains in a
few minutes on two CPU cores. A saved model is plain files, no pickle: the weights
(safetensors), the `HookedTransformerConfig` (JSON) and the tokenizer (JSON).
"""

from __future__ import annotations

import json
import math
import re
import time
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformer_lens import HookedTransformer, HookedTransformerConfig

from codec_cli.worlds.themes_corpus import (CYCLES, ThemesCorpusConfig, build_tokenizer, cycle_members, documents,
                              exact_corpus_entropy, ground_truth, load_tokenizer, save_tokenizer, token_batches,
                              token_logprobs, vocabulary)
from codec_cli import config as configs
from codec_cli.config import SAETrainConfig
from codec_cli.errors import ArtifactError, BadInput, BadParameter
from codec_cli.nn import sae as saes
from codec_cli.nn import schedule
from codec_cli.sources import models
from codec_cli.talk import info, progress

# Held-out documents come from their own corpus seed, so they never overlap the
# training stream and do not shift when `steps` or `batch_size` change.
_EVAL_SEED_OFFSET = 1_000_003
_EVAL_BATCH = 256
# Seeds the cycle planes apart from the initial weights, which cfg.seed seeds directly.
_PLANE_SEED = 7_000_003
_REPORT_EVERY = 10
# Activations whose hook names match the rest of transformer-lens's MLPs (the "_ln"
# ones add a hook, the exotic ones are not worth a CLI choice).

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_DIR = "tokenizer"


@dataclass(frozen=True)
class ThemesModelConfig:
    """The `themes` world's language model: its corpus, architecture and training recipe."""

    n_ctx: int = 64
    """Context length in words, BOS included; every document is cut to exactly this length."""
    n_themes: int = 8
    """Number of topics in the corpus (at most 8)."""
    words_per_theme: int = 16
    """Content words per topic (at most 16)."""
    n_places: int = 16
    """Places to choose from; each document uses exactly one (at most 16)."""
    n_names: int = 8
    """Names to choose from; each document uses exactly one (at most 8)."""
    zipf_exponent: float = 1.0
    """Within a topic, the word of rank r is drawn with weight 1/r**zipf_exponent; 0 is uniform."""
    # Measured on 2 CPU cores, every size from one block or d_model 32 up gets within
    # 0.5% of the loss floor in under three minutes; d_model 64 gets closest per second.
    # Two blocks rather than one so that a middle residual stream exists
    # (blocks.1.hook_resid_pre: context gathered by attention, before the last MLP), the
    # usual place for an SAE, and so that circuits can compose across layers.
    n_layers: int = 2
    """Transformer blocks, each attention then an MLP."""
    d_model: int = 64
    """Width of the residual stream."""
    n_heads: int = 4
    """Attention heads per layer."""
    d_head: int = 16
    """Width of each attention head."""
    d_mlp: int = 256
    """MLP neurons per layer (at blocks.L.mlp.hook_post)."""
    # ReLU rather than GELU: exact zeros give each neuron a well-defined firing set, which
    # is what questions about features packed into neurons ask about; the loss is the same.
    act_fn: Literal["relu", "gelu", "gelu_new", "silu"] = "relu"
    """MLP activation: relu, gelu, gelu_new or silu."""
    steps: int = 1500
    """Optimiser steps."""
    batch_size: int = 64
    """Documents per step."""
    lr: float = 3e-3
    """Peak AdamW learning rate, reached after the warmup and cosine-decayed to 0 by the last step."""
    warmup: int = 100
    """Steps of linear learning-rate warmup (at most the whole run)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    seed: int = 0
    """Seed of the initial weights and of the training documents."""
    eval_docs: int = 1024
    """Held-out documents (from another corpus seed) the final loss is measured on."""
    threads: int = 1
    """Torch CPU threads while training (restored afterwards). One is fastest for a model this small."""
    # Planted because the model, left alone, learns the cycles as a lookup table with no
    # circle in it (measured: per-day residual means spread over six principal components,
    # and no SAE latent per day or arc of days); with its embeddings held on circles the
    # residual stream is planar and the SAE tiles each circle with arc latents, as Engels
    # et al. found in Mistral and Llama. Learned embeddings average 0.95 in norm.
    cycle_radius: float = 1.5
    """Radius of the circles the weekday and month embeddings are held on: a cycle's tokens sit in
    order at equal angles in a plane of its own and never train. 0 lets them train like any token."""

    def __post_init__(self) -> None:
        _ = self.corpus  # ThemesCorpusConfig checks the corpus fields, with the same flag names
        configs.check(self, positive=("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "steps", "batch_size",
                                      "eval_docs", "threads", "lr"),
                      at_least_zero=("warmup", "seed", "cycle_radius", "weight_decay"))
        if self.cycle_radius > 0 and self.d_model <= 2 * len(CYCLES):
            raise BadParameter("d_model", f"must be over {2 * len(CYCLES)} to hold a plane per cycle off LayerNorm's "
                               f"all-ones direction, got {self.d_model}; or set cycle_radius to 0")

    @property
    def corpus(self) -> ThemesCorpusConfig:
        """The corpus part of this config."""
        return ThemesCorpusConfig(n_ctx=self.n_ctx, n_themes=self.n_themes, words_per_theme=self.words_per_theme,
                                  n_places=self.n_places, n_names=self.n_names, zipf_exponent=self.zipf_exponent)


def model_config(cfg: ThemesModelConfig) -> HookedTransformerConfig:
    """The architecture: a GPT-2-style block stack sized by cfg, over the corpus's vocabulary."""
    return HookedTransformerConfig(
        n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads, d_head=cfg.d_head, d_mlp=cfg.d_mlp,
        act_fn=cfg.act_fn, normalization_type="LN", positional_embedding_type="standard",
        d_vocab=len(vocabulary(cfg.corpus)), n_ctx=cfg.n_ctx, model_name="codec-themes", device="cpu")


def _new_model(config: HookedTransformerConfig, tokenizer) -> HookedTransformer:
    with warnings.catch_warnings():
        # transformer-lens 3 warns that HookedTransformer is deprecated in favour of its
        # bridge, which wraps Hugging Face models; a model built from a config has none.
        warnings.simplefilter("ignore", DeprecationWarning)
        return HookedTransformer(config, tokenizer=tokenizer)


def cycle_planes(cfg: ThemesModelConfig) -> dict[str, torch.Tensor]:
    """Each cycle's plane in the embedding space: an orthonormal pair [2, d_model], fixed by cfg.seed."""
    generator = torch.Generator().manual_seed(_PLANE_SEED + cfg.seed)
    basis = torch.randn(cfg.d_model, 2 * len(CYCLES), generator=generator, dtype=torch.float64)
    # Orthogonal to the all-ones direction, which LayerNorm's centring would remove.
    basis -= basis.mean(0)
    basis = torch.linalg.qr(basis).Q.T.float()
    return {name: basis[2 * i: 2 * i + 2] for i, name in enumerate(CYCLES)}


def cycle_circles(cfg: ThemesModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(token ids [T], their embeddings [T, d_model]) of the cycles' tokens, held fixed in training.

    Token k of a cycle of n sits at angle 2πk/n on a circle of radius cfg.cycle_radius in its
    cycle's plane (`cycle_planes`): the day and month circles of Engels et al. 2024, planted.
    """
    planes = cycle_planes(cfg)
    ids, points = [], []
    for name, tokens in cycle_members(cfg.corpus).items():
        for k, token in enumerate(tokens):
            angle = 2 * math.pi * k / len(tokens)
            ids.append(token)
            points.append(cfg.cycle_radius * (math.cos(angle) * planes[name][0] + math.sin(angle) * planes[name][1]))
    return torch.tensor(ids), torch.stack(points)


def _hold_circles(model: HookedTransformer, circles: tuple[torch.Tensor, torch.Tensor]) -> None:
    # Rewritten after every step rather than masked out of the gradient, because AdamW's
    # decoupled weight decay would otherwise shrink the circles.
    ids, points = circles
    with torch.no_grad():
        model.embed.W_E[ids] = points


def _lr_factor(cfg: ThemesModelConfig, step: int) -> float:
    # A short smoke run (--steps 10) keeps the default warmup rather than being refused,
    # and reaches the peak at its last step. The cosine ends one step past the last, so
    # that the last step still learns.
    return schedule.learning_rate(step, cfg.steps, warmup=min(cfg.warmup, cfg.steps), decay="cosine", end=cfg.steps)


def train_model(cfg: ThemesModelConfig = ThemesModelConfig(),
                on_step: Callable[[int, float], None] | None = None) -> tuple[HookedTransformer, dict]:
    """Train the model on cfg's corpus; returns it with its metrics.

    on_step(steps_done, loss) is called every few steps and after the last one.
    Metrics: eval_loss (mean loss on cfg.eval_docs held-out documents), entropy (the
    corpus's exact loss floor), loss_ratio = eval_loss / entropy, excess_loss =
    eval_loss - entropy, eval_floor (the true process's loss on the same held-out
    documents) and eval_gap = eval_loss - eval_floor, which is the model's excess
    without the sampling noise of the held-out set; then train_loss (mean of the last
    steps), steps, tokens, tokens_per_s, train_s, wall_s, threads, n_params.
    """
    started = time.perf_counter()
    corpus = cfg.corpus
    with models.torch_threads(cfg.threads):
        # Seeding inside fork_rng fixes the initial weights without disturbing the
        # caller's global generator (the data has its own, in the corpus).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = _new_model(model_config(cfg), build_tokenizer(corpus))
        circles = cycle_circles(cfg) if cfg.cycle_radius > 0 else None
        if circles is not None:
            _hold_circles(model, circles)
        model.train()
        # beta2 = 0.99 rather than 0.999: a shorter memory of gradient scale suits a run this
        # short (measured: a slightly lower final loss at 1000 and 1500 steps).
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99),
                                      weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(cfg, step))
        recent: deque[float] = deque(maxlen=50)
        train_started = time.perf_counter()
        for step, tokens in enumerate(token_batches(corpus, cfg.batch_size, cfg.seed, cfg.steps)):
            loss = model(tokens, return_type="loss")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if circles is not None:
                _hold_circles(model, circles)
            recent.append(loss.item())
            if on_step is not None and ((step + 1) % _REPORT_EVERY == 0 or step + 1 == cfg.steps):
                on_step(step + 1, recent[-1])
        train_s = time.perf_counter() - train_started
        model.eval()
        eval_loss, eval_floor = _evaluate(model, cfg)
    entropy = exact_corpus_entropy(corpus)
    tokens_seen = cfg.steps * cfg.batch_size * cfg.n_ctx
    return model, {
        "eval_loss": eval_loss, "entropy": entropy, "loss_ratio": eval_loss / entropy,
        "excess_loss": eval_loss - entropy, "eval_floor": eval_floor, "eval_gap": eval_loss - eval_floor,
        "train_loss": sum(recent) / len(recent), "steps": cfg.steps, "tokens": tokens_seen,
        "tokens_per_s": tokens_seen / train_s, "train_s": train_s, "wall_s": time.perf_counter() - started,
        "threads": cfg.threads, "n_params": sum(p.numel() for p in model.parameters()),
    }


def _evaluate(model: HookedTransformer, cfg: ThemesModelConfig) -> tuple[float, float]:
    """(model's loss, true process's loss) in nats/token on the held-out documents."""
    docs = [doc.tokens for doc in documents(cfg.corpus, cfg.eval_docs, cfg.seed + _EVAL_SEED_OFFSET)]
    with torch.inference_mode():
        # Every document has the same length, so a size-weighted mean of batch means is the token mean.
        total = sum(model(batch, return_type="loss").item() * len(batch)
                    for batch in torch.tensor(docs).split(_EVAL_BATCH))
    floor = -sum(sum(token_logprobs(cfg.corpus, doc)) for doc in docs)
    return total / cfg.eval_docs, floor / (cfg.eval_docs * (cfg.n_ctx - 1))


def save_model(model: HookedTransformer, directory: str | Path, tokenizer: bool = True) -> None:
    """Write model.safetensors, config.json and (unless `tokenizer` is False: a model that
    reads no text, as modadd's) tokenizer/ into `directory` (created if needed)."""
    if tokenizer and model.tokenizer is None:
        raise BadInput("this model has no tokenizer to save with it")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    (directory / CONFIG_FILE).write_text(json.dumps(_config_to_json(model.cfg), indent=2, sort_keys=True) + "\n")
    if tokenizer:
        save_tokenizer(model.tokenizer, directory / TOKENIZER_DIR)


def _config_to_json(config: HookedTransformerConfig) -> dict:
    out = {}
    for key, value in config.to_dict().items():
        # Where the model runs is the loader's choice, not a property of the model.
        if key in ("device", "n_devices"):
            continue
        if isinstance(value, torch.dtype):
            value = str(value).removeprefix("torch.")
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def load_model(directory: str | Path, device: str = "cpu", tokenizer: bool = True) -> HookedTransformer:
    """Read a model written by `save_model` (with the same `tokenizer`), offline, onto `device`."""
    directory = Path(directory)
    for name in (WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_DIR)[:3 if tokenizer else 2]:
        if not (directory / name).exists():
            raise ArtifactError(directory, f"no {name} here; not a themes model directory",
                                hint="write one with codec_cli.worlds.themes.save_model")
    try:
        fields = json.loads((directory / CONFIG_FILE).read_text())
        # `HookedTransformerConfig.to_dict()` written with `default=str` spells it "torch.float32".
        dtype = getattr(torch, str(fields.get("dtype", "float32")).removeprefix("torch."))
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"dtype {fields['dtype']!r} is not a torch dtype")
        fields["dtype"] = dtype
        # The weights are about to be overwritten, so drawing initial ones would be wasted time.
        config = HookedTransformerConfig(**{**fields, "device": device, "init_weights": False})
    except (ValueError, TypeError, KeyError, AttributeError, AssertionError) as e:
        raise ArtifactError(directory / CONFIG_FILE, f"not a valid HookedTransformerConfig ({e})") from None
    model = _new_model(config, load_tokenizer(directory / TOKENIZER_DIR) if tokenizer else None)
    try:
        model.load_state_dict(load_file(str(directory / WEIGHTS_FILE), device=device))
    except (RuntimeError, OSError, SafetensorError) as e:
        problem = f"damaged, or weights that do not fit config.json ({str(e).splitlines()[0]})"
        raise ArtifactError(directory / WEIGHTS_FILE, problem) from None
    return model.eval()


# --------------------------------------------------------------------------- the world

# Stream steps draw documents from their own corpus seeds, apart from training and evaluation.
_STREAM_SEED_OFFSET = 2_000_003
# Wall-clock numbers differ run to run; they are shown, never written into the world.
_TIMINGS = ("tokens_per_s", "train_s", "wall_s")

LANGUAGE = True
round_trip = None  # no bottleneck of its own to pass an SAE's reconstruction through
"""The themes world's inputs are token sequences with BOS at position 0."""


@dataclass(frozen=True)
class Config(ThemesModelConfig):
    """The `themes` world: its language model and the SAE codec ships for its residual stream."""

    sae_hook: str = "blocks.1.hook_resid_pre"
    """Where the world's SAE reads: the residual stream between the two blocks."""
    sae_expansion: float = 4.0
    """SAE width as a multiple of d_model."""
    sae_k: int = 8
    """Active latents per token of the (TopK) SAE."""
    sae_steps: int = 2000
    """SAE training steps."""
    sae_batch_size: int = 1024
    """Activation vectors (tokens) per SAE step."""
    # The model's own neurons, with an SAE of their own: the real side of `codec compare
    # neurons`, whose synthetic side squeezes this SAE's features back into as many ReLU
    # neurons. A residual-stream SAE's features live in the wrong space for that.
    mlp_sae_hook: str = "blocks.0.mlp.hook_post"
    """Where the second SAE (`mlp0`) reads: an MLP's post-activations, the model's neurons."""
    mlp_sae_expansion: float = 4.0
    """The neuron SAE's width as a multiple of d_mlp."""
    mlp_sae_k: int = 16
    """Active latents per token of the (TopK) neuron SAE."""
    mlp_sae_lr: float = 3e-3
    """The neuron SAE's Adam learning rate (at 1e-3 most of its latents are still dead after its steps)."""
    # The residual stream where it starts, token plus position: an SAE there gives each topic an atom
    # of its own and its words atoms that fire with it, the themes `codec cluster` recovers.
    token_sae_hook: str = "blocks.0.hook_resid_pre"
    """Where the third SAE (`resid0`) reads: the first block's input, the token and position embeddings."""
    token_sae_expansion: float = 8.0
    """Its width as a multiple of d_model (enough for a latent per word, topic and position)."""
    token_sae_k: int = 4
    """Its active latents per token (TopK)."""
    token_sae_lr: float = 3e-3
    """Its Adam learning rate."""

    def __post_init__(self) -> None:
        # Checked before anything trains: a bad SAE setting must not cost the model's minutes.
        super().__post_init__()
        for name, (pattern, expected) in _HOOKS.items():
            value = getattr(self, name)
            m = re.fullmatch(rf"blocks\.(\d+)\.{pattern}", value)
            if not m or int(m.group(1)) >= self.n_layers:
                raise BadInput(f"-p {name}={value!r}: expected {expected} with L < n_layers={self.n_layers}")
        for _, sae_cfg, _, d_in in _saes(self):
            saes.width(sae_cfg, d_in)


_HOOKS = {"sae_hook": (r"hook_(resid_pre|resid_mid|resid_post|mlp_out|attn_out)",
                       "blocks.L.hook_resid_pre (or resid_mid, resid_post, mlp_out, attn_out)"),
          "mlp_sae_hook": (r"mlp\.hook_post", "blocks.L.mlp.hook_post"),
          "token_sae_hook": (r"hook_resid_pre", "blocks.L.hook_resid_pre")}
"""Each SAE's hook parameter: the hook names it may take, and how the refusal spells them."""


def _saes(cfg: Config) -> list[tuple[str, SAETrainConfig, str, int]]:
    """The world's SAEs: name, training settings, hook and the hook's width."""

    def train(expansion: float, k: int, lr: float = SAETrainConfig.lr) -> SAETrainConfig:
        return SAETrainConfig(expansion_factor=expansion, k=k, steps=cfg.sae_steps, lr=lr,
                              batch_size=cfg.sae_batch_size, seed=cfg.seed, checkpoint_every=0)

    return [("resid", train(cfg.sae_expansion, cfg.sae_k), cfg.sae_hook, cfg.d_model),
            ("mlp0", train(cfg.mlp_sae_expansion, cfg.mlp_sae_k, cfg.mlp_sae_lr), cfg.mlp_sae_hook, cfg.d_mlp),
            ("resid0", train(cfg.token_sae_expansion, cfg.token_sae_k, cfg.token_sae_lr), cfg.token_sae_hook,
             cfg.d_model)]


def inputs(cfg: Config, step: int, n: int) -> torch.Tensor:
    """The n documents of step `step` of the world's stream: tokens [n, n_ctx]."""
    return next(token_batches(cfg.corpus, n, _STREAM_SEED_OFFSET + cfg.seed + step, 1))


# Documents for steering and monitoring (`texts`) have corpus seeds of their own, far from
# the training, evaluation and stream seeds.
_TEXTS_SEED_OFFSET = 500_000_003


def texts(cfg: Config, n: int) -> tuple[torch.Tensor, list[str]]:
    """n held-out documents (tokens [n, n_ctx], BOS first) and each one's planted topic: what
    `codec steer` and `codec monitor` read when given no files."""
    docs = list(documents(cfg.corpus, n, _TEXTS_SEED_OFFSET + cfg.seed))
    return torch.tensor([d.tokens for d in docs], dtype=torch.long), [d.theme for d in docs]


def labels(cfg: Config, token_ids) -> dict:
    """Ground truth per token, for extracted features: its row of the truth table
    (theme, cycle and position, exclusive group and index; null where not applicable)."""
    truth = ground_truth(cfg.corpus).drop("token_id", "token")
    return {name: column for name, column in truth[np.asarray(token_ids, dtype=np.int64)].to_dict().items()}


def build(cfg: Config, w) -> None:
    """Train the language model and its three SAEs from scratch and write the world into writer `w`."""
    with progress("themes model", cfg.steps, unit="steps") as bar:
        model, model_metrics = train_model(cfg, on_step=lambda step, loss: bar.update(completed=step))
    info(f"model: eval loss {model_metrics['eval_loss']:.4f} vs entropy {model_metrics['entropy']:.4f} nats/token, "
         f"{model_metrics['tokens_per_s']:,.0f} tokens/s")
    save_model(model, w.path / "model")
    w.write_table("truth/tokens.parquet", ground_truth(cfg.corpus))

    metrics = {}
    for name, sae_cfg, hook, _ in _saes(cfg):
        with models.torch_threads(cfg.threads):  # as for the model: the same bytes for the same thread count
            src = models.Source("codec-themes", model, lambda step, n: inputs(cfg, step, n), True, hook)
            sae, _, metrics[name] = saes.train_on_source(sae_cfg, src, hook, context=cfg.n_ctx)
        saes.save(sae, w.path / "saes" / name)
        info(f"SAE {name}: L0 {metrics[name]['l0']:.2f}, FVU {metrics[name]['fvu']:.4f}, "
             f"CE loss recovered {metrics[name]['ce_loss_recovered']:.4f}")
    w.write_json("metrics.json", {"model": {k: v for k, v in model_metrics.items() if k not in _TIMINGS},
                                  "saes": metrics})
    w.attrs.update(hooks=sorted(model.hook_dict), saes={name: hook for name, _, hook, _ in _saes(cfg)},
                   default_sae="resid",
                   d_model=cfg.d_model, d_vocab=model.cfg.d_vocab, n_ctx=cfg.n_ctx)
