"""Every stage's config, and the helpers that read configs from strings.

A stage's config is a dataclass whose fields each carry a docstring (the string
literal right below the field, as in sparsify). The CLI is a projection of it
(cli/options.py): every field becomes an option (`--field-name`) or, when marked
`positional()`, an argument, with the field's docstring as its help. Plugin and world
parameters use the same dataclasses and are filled from `-p key=value` strings by
`fill`. The configs live here, apart from their stages, so that the CLI can build its
options without importing a stage (or numpy, or torch).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import textwrap
import types
import typing
from functools import cache
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from codec_cli.errors import BadInput, BadParameter


def positional(**kwargs) -> Any:
    """A dataclass field that the CLI takes as an argument rather than an option."""
    metadata = {**kwargs.pop("metadata", {}), "positional": True}
    return dataclasses.field(metadata=metadata, **kwargs)


@cache
def _top_level_classes(module_name: str) -> dict[str, ast.ClassDef]:
    """A module's classes as parsed source, the module read and parsed once: the CLI asks
    for every config's field docs at start-up, and a parse per class is most of its cost."""
    import sys

    try:
        tree = ast.parse(inspect.getsource(sys.modules[module_name]))
    except (KeyError, OSError, TypeError):
        return {}
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _class_body(klass: type) -> list[ast.stmt]:
    node = _top_level_classes(klass.__module__).get(klass.__qualname__)
    if node is not None:
        return node.body
    try:  # a class defined inside a function (tests do that)
        return ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
    except (OSError, TypeError):
        return []


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass, by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = _class_body(klass)
        for node, after in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return tp


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce(tp: Any, text: str) -> Any:
    """Turn the string `text` into a value of type `tp` (int, float, bool, str,
    Path, Optional[...], list[...] / tuple[...] written comma-separated, and
    sequences of groups written `0+1,2+3`)."""
    tp = _strip_optional(tp)
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)[:1] or (str,)
        if typing.get_origin(item) in (list, tuple):  # groups: "0+1,2+3" -> ((0, 1), (2, 3))
            items = [coerce(item, part.replace("+", ",")) for part in text.split(",") if part.strip()]
        else:
            items = [coerce(item, part.strip()) for part in text.split(",") if part.strip()]
        return items if origin is list else tuple(items)
    if tp is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if typing.get_origin(tp) is Literal:  # the choices are strings: keep the text if it is one of them
        return text
    if tp in (int, float, str, Path):
        return tp(text)
    raise ValueError(f"cannot read a {tp!r} from the command line")


def literal(text: str) -> Any:
    """A value given without a type to read it as (`--model-kwarg KEY=VALUE`): true or false
    (as `coerce` reads them), a JSON number, list or null, or else the text itself."""
    import json

    low = text.strip().lower()
    if low in _TRUE - {"1"} or low in _FALSE - {"0"}:  # "1" and "0" stay numbers
        return low in _TRUE
    try:
        return json.loads(text)
    except ValueError:
        return text


def pairs(items: list[str]) -> dict[str, str]:
    """`["a=1", "b=x"]` -> `{"a": "1", "b": "x"}`, refusing an item without `=`."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"parameter {item!r} is not KEY=VALUE")
        out[key] = value
    return out


def fill(cls: type, pairs: dict[str, str], what: str = "parameter") -> Any:
    """Build dataclass `cls` from string values, with one clear line on a bad key or value."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, text in pairs.items():
        name = key.replace("-", "_")
        if name not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise BadInput(f"unknown {what} {key!r}", hint=f"known {what}s: {known}")
        try:
            values[name] = coerce(hints[name], text)
        except ValueError as e:
            raise BadInput(f"{what} {key}={text!r}: {e}") from None
    finite(values, f"{what} ")
    try:
        return cls(**values)
    except TypeError as e:  # a required field left out
        raise BadInput(f"{what}s incomplete: {e}") from None
    except BadParameter as e:  # named as written: KEY of -p KEY=VALUE, not a flag
        raise BadInput(f"{what} {e.name} {e.problem}", e.hint) from None


def finite(values: dict[str, Any], flag: str) -> None:
    """NaN and infinity are never a sensible setting; refuse them before any work."""
    for name, value in values.items():
        for v in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise BadInput(f"{flag}{name.replace('_', '-') if flag == '--' else name} must be a finite number, "
                               f"got {v}")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as JSON-ready data (paths as strings), for manifests and --json."""
    from codec_cli.artifacts import json_ready

    return json_ready({f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})


# --------------------------------------------------------------------------- checks


def choices(tp: Any) -> tuple | None:
    """The allowed values of a `Literal[...]` field type (or an optional one); None otherwise."""
    tp = _strip_optional(tp)
    return typing.get_args(tp) if typing.get_origin(tp) is Literal else None


def check_ranks(cfg: Any) -> None:
    """--shard and --of: both or neither, and the rank in [0, of)."""
    if (cfg.shard is None) != (cfg.of is None):
        raise BadParameter(("shard", "of"), "go together (this rank, of how many)", hint="e.g. --shard 0 --of 4")
    if cfg.of is not None and not 0 <= cfg.shard < cfg.of:
        raise BadParameter("shard", f"must be in [0, {cfg.of}), got {cfg.shard}")


def check(cfg: Any, positive: tuple[str, ...] = (), at_least_zero: tuple[str, ...] = ()) -> None:
    """The checks every config needs: each `Literal` field holds one of its choices, each of
    `positive` is above 0 and each of `at_least_zero` is not negative, and both are finite
    (None passes: unset).
    Failures name the field (errors.BadParameter)."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        allowed = choices(hints[f.name])
        value = getattr(cfg, f.name)
        if allowed and value is not None and value not in allowed:
            raise BadParameter(f.name, f"must be one of {', '.join(map(str, allowed))}, not {value!r}")
    for name in (*positive, *at_least_zero):
        value = getattr(cfg, name)
        if isinstance(value, float) and math.isinf(value):  # NaN fails the checks below
            raise BadParameter(name, f"must be a finite number, got {value}")
    for name in positive:
        value = getattr(cfg, name)
        if value is not None and not value > 0:  # a count's least value is 1; a rate's is anything above 0
            raise BadParameter(name, f"must be {'at least 1' if isinstance(value, int) else 'positive'}, got {value}")
    for name in at_least_zero:
        value = getattr(cfg, name)
        if value is not None and not value >= 0:
            raise BadParameter(name, f"must be at least 0, got {value}")


# --------------------------------------------------------------------------- stage configs

Decay = Literal["constant", "linear", "cosine"]
"""How a learning rate falls after its warm-up (codec_cli/nn/schedule.py)."""


@dataclass(frozen=True)
class ExtractConfig:
    source: str | None = positional(default=None)
    """The model: a built-in world (toy, themes), a built world's directory, a model
    directory (codec's or Hugging Face's format), or a transformer-lens model name
    (needs a reachable hub); default: the model the SAE names."""
    sae: str | None = None
    """The SAE: one of the world's (by name; default its own), a sae-lens or sparsify
    directory, or a sae-lens release (with --sae-id)."""
    sae_id: str | None = None
    """The SAE's id within a sae-lens release, e.g. blocks.8.hook_resid_pre."""
    hook: str | None = None
    """The hook the SAE reads; default: the one in the SAE's config."""
    neurons: str | None = None
    """Also store the model's own activations at this hook (e.g. blocks.0.mlp.hook_post), for compare."""
    corpus: list[Path] = field(default_factory=list)
    """Text (.txt), JSON-lines (.jsonl) or parquet files, a directory of them, or a quoted glob (repeatable); worlds bring their own."""
    dataset: str | None = None
    """A Hugging Face dataset to stream instead of --corpus files (a hub name or a local dataset directory)."""
    split: str = "train"
    """The split of --dataset."""
    column: str = "text"
    """The text field of .jsonl, .parquet and --dataset documents."""
    context: int | None = None
    """Context window in tokens, BOS included; default: the SAE's training context, else 128."""
    bos: bool = True
    """Start every window with the BOS token (as most SAEs were trained)."""
    keep_bos: bool = False
    """Keep the BOS position's activations (dropped by default: they are outliers, not text)."""
    tokens: int = 65536
    """Token budget: rows to extract (the corpus may end sooner)."""
    batch_size: int = 16
    """Context windows per forward pass."""
    k: int | None = None
    """Features kept per token; default: the SAE's own k (TopK SAEs), else the least k that keeps --mass."""
    mass: float = 0.99
    """The share of activation mass the default k must keep, for SAEs that are not TopK."""
    dtype: Literal["float32", "float16"] = "float32"
    """Storage type of the feature values."""
    shard_tokens: int = 32768
    """Rows per shard (rounded to whole windows); memory holds one shard."""
    shard: int | None = None
    """This process's rank when one extraction is split over --of processes."""
    of: int | None = None
    """How many processes split the extraction; each writes a part, `codec merge` joins them."""
    model_kwarg: list[str] = field(default_factory=list)
    """A transformer-lens from_pretrained option as KEY=VALUE (repeatable); the SAE's own take precedence."""
    device: str = "cpu"
    """Where the model and SAE run: cpu or cuda."""
    out: Path = Path("features")
    """Output directory; with --of, put {rank} in it (e.g. parts/{rank})."""
    resume: bool = False
    """Carry on from the last whole shard of an interrupted run into the same --out."""

    def __post_init__(self):
        check(self, positive=("tokens", "batch_size", "shard_tokens", "k"))
        if self.context is not None and self.context < 1 + self.bos:
            raise BadParameter("context", f"must be at least {1 + self.bos}, got {self.context}")
        if not 0 < self.mass <= 1:
            raise BadParameter("mass", f"must be in (0, 1], got {self.mass}")
        if self.corpus and self.dataset:
            raise BadParameter(("corpus", "dataset"), "are two kinds of corpus: give one")
        check_ranks(self)

    @property
    def reads_files(self) -> bool:
        """Whether the corpus is files or a dataset rather than a world's own stream."""
        return bool(self.corpus or self.dataset)


@dataclass(frozen=True)
class MergeConfig:
    parts: list[Path] = positional()
    """The parts: the outputs of every rank of one extraction or sweep (--shard i --of n)."""
    out: Path = Path("features")
    """Output directory: the joined features (or sweep) artifact."""


@dataclass(frozen=True)
class SqueezeConfig:
    features: Path = positional()
    """The features artifact to squeeze (written by `codec extract`)."""
    m: int = 768
    """Synthetic neurons M: the width of the bottleneck."""
    k: int = 64
    """Top-k input sparsity: each token keeps its k largest features (at most the extracted k are there)."""
    neuron_act: Literal["linear", "relu"] = "linear"
    """The neurons: linear (h = W_enc x + b_enc, the toy model) or relu (neuron-like, for `codec compare`)."""
    tied: bool = True
    """Tie the decoder to the encoder (W_dec = W_encᵀ, the toy model); --no-tied trains both."""
    rescale: str = "none"
    """Divide each feature by a scale first: none, max (its largest activation), or a quantile of its
    nonzero activations such as p99 (estimated on the first 65,536 training rows)."""
    importance: str = "uniform"
    """Per-feature weight in the loss: uniform, frequency (how often it fires), or a parquet table with
    columns feature and importance."""
    batch_size: int = 1024
    """Tokens per step."""
    steps: int | None = None
    """Optimiser steps; default: --epochs passes over the training rows."""
    epochs: int = 1
    """Passes over the training rows, when --steps is not given."""
    lr: float = 1e-3
    """AdamW peak learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay (PyTorch's default, as in the toy-model paper)."""
    warmup: int = 100
    """Steps of linear learning-rate warm-up from zero."""
    decay: Decay = "cosine"
    """Learning-rate decay after the warm-up."""
    final_lr: float = 0.1
    """The learning rate at the last step, as a fraction of --lr (linear and cosine decay)."""
    restarts: int = 1
    """Squeezers trained side by side from different initial weights; the one with the lowest held-out
    loss is kept (small toy models often land in a poor local minimum)."""
    seed: int = 0
    """Seed of the initial weights and of the shuffling."""
    seeds: str | None = None
    """Train one Squeezer per seed, e.g. 0,1,2, each into OUT/seed-N/ as --seed N would (not --restarts,
    which keeps the best of several)."""
    eval_rows: int = 8192
    """The last rows of the features, held out of training: everything reported is measured on them."""
    buffer_rows: int = 1 << 18
    """Rows held in memory for shuffling across shards (about 12·k bytes each, plus up to one shard more)."""
    represented: float = 0.1
    """A feature counts as represented when its round trip W_enc_f · W_dec_f is at least this."""
    faithfulness: bool = True
    """Measure the model's own codec on the held-out rows (needs the SAE the features came from)."""
    sae: str | None = None
    """The SAE the features came from, where it is no longer where extraction found it."""
    sae_id: str | None = None
    """The SAE's id within a sae-lens release, with --sae."""
    device: str = "cpu"
    """Where to train: cpu, cuda, cuda:1, …"""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """The decoder's matrix-multiply precision; bfloat16 is for GPUs (weights stay float32)."""
    checkpoint_every: int = 1000
    """Save a resumable checkpoint every this many steps (0: never)."""
    out: Path = Path("squeezer")
    """Output directory: the squeezer artifact (with --seeds, a directory of them)."""
    resume: bool = False
    """Carry on from the last checkpoint of an interrupted run into the same --out (with --seeds:
    finished seeds are kept, the interrupted one resumes)."""

    def __post_init__(self):
        check(self, positive=("m", "k", "batch_size", "steps", "epochs", "restarts", "eval_rows", "buffer_rows", "lr"),
              at_least_zero=("weight_decay", "final_lr", "represented", "warmup", "checkpoint_every"))
        quantile(self.rescale)
        if self.seeds is not None:
            seed_list(self.seeds)


def seed_list(seeds: str) -> list[int]:
    """"0,1,2" -> [0, 1, 2]: `--seeds`, distinct non-negative integers."""
    try:
        out = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 0 or len(set(out)) < len(out):
        raise BadParameter("seeds", f"takes distinct non-negative integers separated by commas (e.g. 0,1,2), "
                                    f"not {seeds!r}")
    return out


def quantile(rescale: str) -> float | None:
    """`p99` -> 0.99; None for none and max; BadInput for anything else."""
    if rescale in ("none", "max"):
        return None
    try:
        q = float(rescale.removeprefix("p")) / 100 if rescale.startswith("p") else math.nan
    except ValueError:
        q = math.nan
    if not 0 < q <= 1:
        raise BadParameter("rescale", f"must be none, max or a percentile such as p99, not {rescale!r}")
    return q


@dataclass(frozen=True)
class AnalyzeConfig:
    inputs: list[Path] = positional()
    """Input artifacts (features/, squeezer/, …); each plugin takes the kinds it requires. An input's own
    recorded inputs join in when they are still where they were made (squeezer/ brings its features/)."""
    out: Path = Path("analysis")
    """Output directory; each plugin writes its own artifact in OUT/PLUGIN/."""
    plugin: list[str] = field(default_factory=list, metadata={"short": ("-P",)})
    """Plugins to run, comma-separated or repeated. Default: every plugin whose required inputs are given."""
    param: list[str] = field(default_factory=list, metadata={"short": ("-p",)})
    """A plugin parameter, KEY=VALUE for every plugin that has KEY, or PLUGIN.KEY=VALUE (repeatable)."""


@dataclass(frozen=True)
class CompareNeuronsConfig:
    squeezer: Path = positional()
    """The squeezer artifact whose synthetic neurons are compared (ReLU neurons, M of them)."""
    features: Path | None = positional(default=None)
    """The features artifact it was trained on, holding the model's real neurons (`codec extract
    --neurons HOOK`); default: the one the squeezer records, where it still is."""
    rows: Literal["held-out", "all"] = "held-out"
    """The tokens compared: the squeezer's held-out rows (never trained on), or all of them."""
    draws: int = 100
    """Draws of each chance baseline: randomly initialised Squeezers, token shuffles (and rotations of
    linear neurons); the permutation p-value is at least 1/(draws + 1)."""
    relative: float = 0.3
    """A neuron carries (has as a roommate) a feature that moves it by at least this share of the
    feature that moves it most (docs/compare.md)."""
    window: int = 1
    """The OR-gate statistics count co-occurrence in blocks of this many tokens (0: whole contexts)."""
    allow_partial: bool = False
    """Match M synthetic neurons to a different number of real ones (one-to-one on the smaller side)."""
    allow_linear: bool = False
    """Compare linear neurons too, whose basis is arbitrary (scores beside random rotations of them)."""
    seed: int = 0
    """Seed of the baselines and of the rows kept for the scatter plots."""
    out: Path = Path("comparison")
    """Output directory: the comparison artifact."""

    def __post_init__(self):
        check(self, positive=("draws",), at_least_zero=("window", "seed"))
        if not 0 <= self.relative <= 1:
            raise BadParameter("relative", f"must be between 0 and 1, got {self.relative}")


@dataclass(frozen=True)
class CompareDictionariesConfig:
    inputs: list[str] = positional()
    """Two or more dictionaries of one space: SAE directories (sae-lens, sparsify, `codec sae train`),
    WORLD:SAE (e.g. themes:mlp0; toy:truth for the true features), RELEASE@SAE_ID (a sae-lens
    release), or squeezers (their neurons, in feature space)."""
    features: list[Path] = field(default_factory=list)
    """Features artifacts that input SAEs extracted on the same tokens (`codec extract`, repeatable): their
    latents' frequencies, and a second matching by the correlation of their activations."""
    threshold: float = 0.7
    """A latent is shared when its matched partner's decoder and encoder cosines are both at least this."""
    draws: int = 5
    """Pairs of random dictionaries of the same sizes behind each chance level."""
    route: Literal["auto", "dense", "sparse"] = "auto"
    """The matching: dense (every cosine at once), sparse (each latent's best candidates, in blocks of rows),
    or auto (dense up to --dense-max cosines)."""
    dense_max: int = 1 << 24
    """The most cosines (F_A × F_B) the auto route matches densely."""
    candidates: int = 32
    """Candidates per latent, each way, on the sparse route."""
    seed: int = 0
    """Seed of the random dictionaries."""
    out: Path = Path("comparison")
    """Output directory: the comparison artifact."""

    def __post_init__(self):
        check(self, positive=("draws", "dense_max", "candidates"), at_least_zero=("seed",))
        if not -1 <= self.threshold <= 1:
            raise BadParameter("threshold", f"is a cosine, between -1 and 1, not {self.threshold}")


Embed = Literal["decoder", "encoder", "coactivation", "decoder+coactivation"]
"""What `codec cluster` embeds per atom (stages/cluster.py)."""


@dataclass(frozen=True)
class ClusterConfig:
    features: Path = positional()
    """The features artifact whose atoms are clustered (`codec extract`); its SAE is reopened for its
    directions."""
    embed: Embed = "decoder"
    """Each atom as a vector: its decoder direction, its encoder direction, its co-activation profile (which
    atoms fire with it, PPMI over --window blocks, reduced by SVD), or decoder+coactivation (both, halved)."""
    method: Literal["umap-hdbscan", "spectral", "graph"] = "umap-hdbscan"
    """umap-hdbscan (UMAP to --components dimensions, then HDBSCAN), spectral (Engels et al.'s affinity
    1 − arccos(cos)/π, --themes clusters), or graph (each atom joined to its --graph-neighbors nearest above
    --graph-threshold, connected components)."""
    window: int = 1
    """Co-activation counts atoms firing together in blocks of this many tokens of one context (0: whole
    contexts)."""
    profile_dims: int = 64
    """Dimensions the co-activation profiles are reduced to (truncated SVD of the PPMI matrix)."""
    neighbors: int = 15
    """UMAP's n_neighbors: the size of the neighbourhood it keeps (also the 2-d map's)."""
    components: int = 5
    """Dimensions UMAP reduces to before HDBSCAN (the map is always 2-d)."""
    min_cluster_size: int = 5
    """The fewest atoms a theme may have; smaller groups (every method's) are noise."""
    min_samples: int | None = None
    """HDBSCAN's min_samples (how conservative; default: min_cluster_size)."""
    themes: int | None = None
    """Clusters for spectral (default: √(atoms / 2), rounded)."""
    graph_neighbors: int = 2
    """graph: each atom's nearest neighbours that may join it."""
    graph_threshold: float = 0.5
    """graph: the cosine above which a neighbour joins."""
    isolated: float | None = None
    """An atom whose nearest neighbour's cosine is below this is noise, whatever the method (default:
    sqrt(2 ln n / d), the nearest neighbour's cosine among n random directions in d dimensions)."""
    top: int = 10
    """Top tokens and top atoms kept per theme (and tokens per atom)."""
    min_count: int = 5
    """A token ranks among an atom's or theme's top tokens only where it occurs at least this often."""
    draws: int = 20
    """Random groups of each theme's size behind the coherence baselines."""
    seed: int = 0
    """Seed of UMAP, spectral clustering and the random groups."""
    out: Path = Path("themes")
    """Output directory: the themes artifact."""

    def __post_init__(self):
        check(self, positive=("profile_dims", "neighbors", "components", "min_cluster_size", "min_samples", "themes",
                              "graph_neighbors", "top", "draws"), at_least_zero=("window", "min_count", "seed"))
        if self.neighbors < 2:
            raise BadParameter("neighbors", f"must be at least 2, got {self.neighbors}")
        if self.isolated is not None and not -1 <= self.isolated <= 1:
            raise BadParameter("isolated", f"is a cosine, between -1 and 1, not {self.isolated}")
        if not -1 <= self.graph_threshold < 1:
            raise BadParameter("graph_threshold", f"is a cosine, at least -1 and below 1, not {self.graph_threshold}")


Strengths = str
"""`--sweep`: A:B:STEP (both ends included) or a list A,B,C (config.strengths)."""


def _steps(spec: str) -> list[str]:
    """"A:B:STEP" -> its values, both ends included, as text ("5:20:5" -> 5, 10, 15, 20; floats are
    rounded to 10 digits, so 0.8:0.9:0.05 gives 0.85, not 0.8500000000000001); ValueError if malformed."""
    a, b, step = spec.split(":")
    whole = all(x.strip().lstrip("+-").isdigit() for x in (a, b, step))
    lo, hi, by = (int(x) if whole else float(x) for x in (a, b, step))
    if not by > 0 or hi < lo or (hi - lo) / by > 10_000:
        raise ValueError
    n = int(math.floor((hi - lo) / by + 1e-9)) + 1
    return [str(lo + i * by) if whole else repr(round(lo + i * by, 10)) for i in range(n)]


def strengths(spec: str) -> list[float]:
    """"0:1:0.25" -> [0, 0.25, 0.5, 0.75, 1]; "0,0.5,2" -> [0, 0.5, 2]: the strengths of a sweep."""
    try:
        out = [float(x) for x in (_steps(spec) if ":" in spec else spec.split(",")) if x.strip()]
    except ValueError:
        out = []
    if not out or not all(math.isfinite(x) for x in out) or len(set(out)) < len(out):
        raise BadParameter("sweep", f"takes A:B:STEP (e.g. 0:2:0.25) or distinct numbers separated by commas, "
                                    f"not {spec!r}")
    return out


def grid_axis(item: str) -> tuple[str, list[str]]:
    """"sparsity=0.8:0.99:0.01" or "seed=0,1,2" -> (key, its values as text): one axis of `--grid`."""
    key, sep, spec = item.partition("=")
    try:
        values = [v.strip() for v in (_steps(spec) if ":" in spec else spec.split(",")) if v.strip()]
    except ValueError:
        values = []
    if not sep or not key or not values or len(set(values)) < len(values):
        raise BadParameter("grid", f"takes KEY=A:B:STEP or KEY=V1,V2,... with distinct values (e.g. "
                                   f"sparsity=0.8:0.99:0.01, seed=0,1,2), not {item!r}")
    if any("/" in v or v.startswith(".") for v in values):
        raise BadParameter("grid", f"values name the cells' directories: no '/' or leading '.', in {item!r}")
    return key, values


@dataclass(frozen=True)
class SteerConfig:
    model: str = positional()
    """The model to steer: a built-in world (themes), a world's directory, a codec model directory, or a
    transformer-lens model name (needs a reachable hub); the SAE reads its hook."""
    themes: Path
    """The themes artifact (`codec cluster`) the theme comes from; its features name the SAE."""
    theme: str
    """The theme: its number, or a word of its label or top tokens (e.g. telescope)."""
    method: Literal["add", "clamp"] = "add"
    """add: the theme's direction added at every position; clamp: the theme's atoms set to a value inside the
    SAE's reconstruction, its error term kept (docs/steer.md)."""
    strength: float | None = None
    """add: s, the added norm as a share of the residual's (default 1); clamp: the value, in units of each
    atom's mean activation (default 0: removed; negative opposes)."""
    sweep: Strengths | None = None
    """Strengths side by side instead of one: A:B:STEP or A,B,C (e.g. 0:2:0.25)."""
    norm: Literal["local", "global"] = "local"
    """add: δ = s·‖x‖·v̂ at each position (local, norm-matched), or s·median‖x‖·v̂ everywhere (global, the
    un-normalised constant vector of ActAdd and CAA)."""
    weights: Literal["mean", "uniform"] = "mean"
    """How the theme's decoder directions are combined: by each atom's mean activation, or equally."""
    prompts: list[Path] = field(default_factory=list)
    """Prompt files: .txt (one prompt per line), .jsonl or .parquet (--column); default: a world's own held-out
    documents, cut to --prompt-tokens."""
    neutral: list[Path] = field(default_factory=list)
    """Neutral held-out text for the cost (KL, perplexity), in the same formats; default: a world's own
    held-out documents."""
    column: str = "text"
    """The text field of .jsonl and .parquet files."""
    n_prompts: int = 32
    """Prompts used (the first N of the files, or N world documents)."""
    prompt_tokens: int = 8
    """A world document's prompt: its first N tokens, BOS included."""
    n_neutral: int = 32
    """Neutral texts used (the first N)."""
    new_tokens: int = 24
    """Tokens generated per prompt."""
    greedy: bool = False
    """Decode greedily instead of sampling (sampling is seeded, with the same random numbers for every method,
    so strength 0 gives the clean model's tokens)."""
    temperature: float = 1.0
    """Sampling temperature."""
    draws: int = 3
    """Random directions and random groups of atoms behind each baseline (their mean is reported)."""
    snr_strength: float | None = None
    """The strength at which SNR is measured against the number of atoms N (default: --strength's)."""
    sae: str | None = None
    """The SAE, where it is no longer where the features recorded it (as for `codec extract --sae`)."""
    sae_id: str | None = None
    """The SAE's id within a sae-lens release."""
    device: str = "cpu"
    """Where the model runs: cpu, cuda, cuda:N or mps."""
    batch_size: int = 32
    """Prompts (and neutral texts) per forward pass."""
    seed: int = 0
    """Seed of the random baselines and of sampling."""
    out: Path = Path("steering")
    """Output directory: the steering artifact."""

    def __post_init__(self):
        check(self, positive=("n_prompts", "prompt_tokens", "n_neutral", "new_tokens", "temperature", "draws",
                              "batch_size"), at_least_zero=("seed",))
        if not self.theme:
            raise BadParameter("theme", "is required: a theme's number, or a word of its label")
        for name in ("strength", "snr_strength"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise BadParameter(name, f"must be a finite number, got {value}")
        if self.sweep is not None:
            strengths(self.sweep)
        if self.prompt_tokens < 2:
            raise BadParameter("prompt_tokens", f"must be at least 2 (BOS and a word), got {self.prompt_tokens}")

    @property
    def levels(self) -> list[float]:
        """The strengths run: the sweep's, or the one strength."""
        if self.sweep is not None:
            return strengths(self.sweep)
        return [self.strength if self.strength is not None else (1.0 if self.method == "add" else 0.0)]


@dataclass(frozen=True)
class MonitorConfig:
    model: str = positional()
    """The model to watch (as for `codec steer`); the SAE reads its hook."""
    themes: Path
    """The themes artifact (`codec cluster`) the themes come from; its features name the SAE."""
    theme: list[str]
    """A theme to monitor (repeatable): its number, or a word of its label or top tokens."""
    texts: list[Path] = field(default_factory=list)
    """Texts on the theme, to detect: .txt (one text per line), .jsonl or .parquet (--column); default: a
    world's own held-out documents, each on its planted topic."""
    neutral: list[Path] = field(default_factory=list)
    """Texts off the theme: half calibrate the threshold, half measure the false positives; default: the
    world's documents of other topics."""
    column: str = "text"
    """The text field of .jsonl and .parquet files."""
    n_texts: int = 400
    """World documents drawn (or, from files, the first N of each of --texts and --neutral)."""
    score: Literal["sum", "max", "share"] = "sum"
    """A token's score: the theme's atoms' summed activation, their largest, or their share of all atoms'."""
    pool: Literal["mean", "max"] = "mean"
    """A text's score from its tokens' scores: their mean, or their largest."""
    fpr: float = 0.01
    """The false-positive rate the threshold is calibrated to, on the calibration half of the neutral texts."""
    draws: int = 20
    """Random groups of atoms (outside the theme, of its size) behind the chance AUROC."""
    sae: str | None = None
    """The SAE, where it is no longer where the features recorded it."""
    sae_id: str | None = None
    """The SAE's id within a sae-lens release."""
    device: str = "cpu"
    """Where the model runs: cpu, cuda, cuda:N or mps."""
    batch_size: int = 32
    """Texts per forward pass."""
    seed: int = 0
    """Seed of the calibration split and of the random groups."""
    out: Path = Path("monitoring")
    """Output directory: the monitoring artifact."""

    def __post_init__(self):
        check(self, positive=("n_texts", "draws", "batch_size"), at_least_zero=("seed",))
        if not self.theme:
            raise BadParameter("theme", "is required: a theme's number, or a word of its label (repeatable)")
        if not 0 < self.fpr < 1:
            raise BadParameter("fpr", f"is a rate, above 0 and below 1, not {self.fpr}")


@dataclass(frozen=True)
class SAETrainConfig:
    architecture: Literal["topk", "relu"] = "topk"
    """topk (exactly k active features per token) or relu (ReLU with an L1 penalty)."""
    expansion_factor: float = 2.0
    """SAE width as a multiple of the activation width: d_sae = round(factor × d_in)."""
    k: int = 4
    """Active features per token (topk)."""
    l1_coefficient: float = 1.0
    """Weight of the L1 sparsity penalty (relu)."""
    lr: float = 1e-3
    """Adam learning rate."""
    batch_size: int = 1024
    """Activation vectors per step."""
    steps: int = 2000
    """Training steps."""
    seed: int = 0
    """Seed of the SAE's initial weights."""
    dead_window: int = 200
    """A feature that has not fired for this many steps counts as dead (and feeds the aux-k loss)."""
    checkpoint_every: int = 250
    """Save a resumable checkpoint every this many steps (0: never)."""

    def __post_init__(self):
        check(self, positive=("expansion_factor", "lr", "batch_size", "steps", "dead_window", "k"),
              at_least_zero=("l1_coefficient", "checkpoint_every"))


@dataclass(frozen=True)
class SAERunConfig(SAETrainConfig):
    """`codec sae train`: what to train an SAE on, and how."""

    source: str = positional(default="toy")
    """A built-in world (toy, themes), a built world's directory, a codec-saved transformer-lens
    model directory, or a transformer-lens model name (needs a reachable hub)."""
    hook: str | None = None
    """The hook to read, e.g. blocks.1.hook_resid_pre; default: the world's SAE hook."""
    corpus: list[Path] = field(default_factory=list)
    """Text (.txt), JSON-lines (.jsonl) or parquet files to read (repeatable); worlds bring their own."""
    column: str = "text"
    """The text field of .jsonl and .parquet corpora."""
    context: int = 64
    """Context length in tokens, BOS included, for --corpus files."""
    seeds: str | None = None
    """Train one SAE per seed, e.g. 0,1,2,3,4, each into OUT/seed-N/ as --seed N would."""
    out: Path = Path("sae")
    """Output directory: a sae-lens SAE directory that is also a codec artifact (with --seeds, a
    directory of them)."""
    resume: bool = False
    """Carry on from the last checkpoint of an interrupted run into the same --out (with --seeds:
    finished seeds are kept, the interrupted one resumes)."""

    def __post_init__(self):
        super().__post_init__()
        if self.seeds is not None:
            seed_list(self.seeds)


SWEEP_SAES = ("relu", "topk")
"""The SAE recipes `codec sweep --sae` knows (stages/sweep_cell.py, docs/sweep.md)."""


@dataclass(frozen=True)
class SweepConfig:
    """`codec sweep`: a world rebuilt and its SAEs retrained at every point of a grid."""

    world: str = positional()
    """The world to sweep: toy (the world whose true feature directions are known)."""
    grid: list[str] = field(default_factory=list)
    """An axis, KEY=A:B:STEP (both ends included) or KEY=V1,V2,… (repeatable): a world parameter, or
    sae.KEY for a setting of every SAE (e.g. sae.l1_coefficient=0.003,0.01,0.03); the cells are every
    combination."""
    param: list[str] = field(default_factory=list, metadata={"short": ("-p",)})
    """A world parameter held fixed in every cell, KEY=VALUE (repeatable); see docs/worlds.md."""
    sae: list[str] = field(default_factory=list)
    """An SAE recipe trained in every cell (repeatable): relu (ReLU + L1, seeds/002's recipe) or topk (the
    world's own); default both."""
    map: str | None = None
    """The phase maps' axes, X,Y (default: the first two axes with more than one value)."""
    jobs: int = 1
    """Cells run side by side in this many processes (each on one thread)."""
    shard: int | None = None
    """This process's rank when one sweep is split over --of processes."""
    of: int | None = None
    """How many processes split the sweep (cell i goes to rank i mod n); `codec merge` joins the parts."""
    out: Path = Path("sweep")
    """Output directory; with --of, put {rank} in it (e.g. parts/{rank})."""
    resume: bool = False
    """Keep the cells already finished with the same settings, by an interrupted run or in the sweep at --out."""

    def __post_init__(self):
        check(self, positive=("jobs",))
        check_ranks(self)
        for item in self.grid:
            grid_axis(item)
        unknown = [s for s in self.sae if s not in SWEEP_SAES]
        if unknown or len(set(self.sae)) < len(self.sae):
            raise BadParameter("sae", f"takes distinct recipes among {', '.join(SWEEP_SAES)}, not "
                                      f"{', '.join(unknown or self.sae)}")

    @property
    def saes(self) -> tuple[str, ...]:
        """The recipes to train: those named, else all."""
        return tuple(self.sae) or SWEEP_SAES


@dataclass(frozen=True)
class ReportConfig:
    """`codec report`: every artifact under some directories on one offline HTML page."""

    dirs: list[Path] = positional()
    """Directories to search for artifacts (each a directory with a manifest.json, found at any depth)."""
    out: Path = Path("report.html")
    """The HTML file to write (one self-contained file; figures embedded)."""
    rows: int = 20
    """Rows of each table shown (the whole table sorts by any column)."""
    cards: int = 200
    """At most this many feature cards per features artifact: the ids the tables name first, then the most
    frequent."""
    examples: int = 8
    """Top-activating contexts on each feature's or neuron's card."""

    def __post_init__(self):
        check(self, positive=("rows", "examples"), at_least_zero=("cards",))


@dataclass(frozen=True)
class ShowConfig:
    """`codec show`: a feature's (or synthetic neuron's, or theme's) card in the terminal."""

    artifact: Path = positional()
    """A features artifact (then ID is a feature), a squeezer (a synthetic neuron; its features must still be
    where it was squeezed from) or a themes artifact (a theme)."""
    id: int = positional()
    """The feature, neuron or theme to show."""
    examples: int = 8
    """Top-activating contexts to print."""

    def __post_init__(self):
        check(self, positive=("examples",))
