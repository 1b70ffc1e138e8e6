"""`codec extract`: SAE features, and optionally the model's own activations, per token.

The Decompress step (DESIGN.md §3). A model reads a corpus; at the SAE's hook the
activations are encoded by the SAE and each token keeps its top-k features (indices
and values); everything downstream reads the `features` artifact this writes
(sources/features.py, docs/artifacts.md).

The corpus is a stream of context windows cut into shards of whole windows. Shard j
depends on nothing but j, so

- memory is bounded by one shard, whatever the token budget;
- `--resume` skips the shards a killed run finished and gives the same bytes;
- `--shard i --of n` (or torchrun's RANK and WORLD_SIZE) runs the shards j ≡ i mod n,
  and `codec merge` joins the parts into the artifact one process would have written.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import itertools
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import polars as pl
import torch
from safetensors.numpy import load_file

from codec_cli import config, talk, worlds
from codec_cli.artifacts import ArtifactWriter, canonical_json, check_output
from codec_cli.config import ExtractConfig
from codec_cli.errors import BadInput
from codec_cli.sources import models
from codec_cli.stages.ranks import output, rank
from codec_cli.sources.corpora import Window, context_windows, corpus_files, hub_documents, read_documents
from codec_cli.sources.features import NEURONS, SHARD, SHARD_DIRS, TOKENS, Stats, shard_number
from codec_cli.talk import info, progress

STREAM_STEP = 2 * 10**9
"""World streams are read from this step on: data that neither the world's training
(steps from 0) nor its evaluation (from models.HELD_OUT) saw."""
CHUNK = 256
"""Windows per world stream step; fixed, so that --batch-size does not change the data."""
CALIBRATION_ROWS = 4096
"""Rows encoded to choose k when it is neither given nor the SAE's own."""


def model_kwargs(asked: list[str], sae_meta) -> dict:
    """The user's options, overridden by the SAE's `model_from_pretrained_kwargs`: the SAE
    was trained on activations made with those, and reads nothing else correctly."""
    mine = {k: config.literal(v) for k, v in config.pairs(asked).items()}
    theirs = dict(getattr(sae_meta, "model_from_pretrained_kwargs", None) or {})
    for key, value in theirs.items():
        if key in mine and mine[key] != value:
            info(f"note: using {key}={value} from the SAE's config, not {mine[key]} as asked "
                 "(the SAE was trained on activations made so)")
    if theirs:
        info("model options from the SAE: " + ", ".join(f"{k}={v}" for k, v in sorted(theirs.items())))
    return mine | theirs


# --------------------------------------------------------------------------- the stream


@dataclass(frozen=True)
class Stream:
    """Where windows come from and how they become rows."""

    language: bool
    n_ctx: int
    drop_bos: bool
    """Whether position 0 of every window is a BOS to leave out."""
    budget: int
    position: int | None = None
    """The one position of each window that is a row (a world's POSITION), or None for all."""

    def rows(self, real: int) -> int:
        return real - self.drop_bos if self.language and self.position is None else 1

    def full_rows(self) -> int:
        return self.rows(self.n_ctx)


def windows(cfg: ExtractConfig, stream: Stream, model, world) -> Iterator:
    """The extraction's windows in order, the last one cut so that the rows add up to
    exactly the token budget (or fewer, where the corpus ends)."""
    if world is not None and not cfg.reads_files:
        module, wcfg = world.config()

        def source():
            for step in itertools.count():
                for i, row in enumerate(module.inputs(wcfg, STREAM_STEP + step, CHUNK)):
                    yield Window(row, len(row) if stream.language else 1, step * CHUNK + i)
    else:
        def source():
            docs = hub_documents(cfg.dataset, cfg.column, cfg.split) if cfg.dataset else \
                read_documents(list(cfg.corpus), cfg.column)
            yield from context_windows(model.tokenizer, docs, stream.n_ctx, cfg.bos)

    made = 0
    for window in source():
        n = stream.rows(window.real)
        if n <= 0:
            continue
        if made + n > stream.budget:
            window = replace(window, real=window.real - (made + n - stream.budget))
            n = stream.budget - made
        yield window
        made += n
        if made >= stream.budget:
            return


# --------------------------------------------------------------------------- encoding


@dataclass
class Encoder:
    """Runs the model up to the hooks, the SAE on the activations, and keeps the top k."""

    model: Any
    sae: Any
    hook: str
    neurons: str | None
    stream: Stream
    device: str
    k: int = 0

    def stop_at(self) -> dict:
        layers = [models.stop_layer(h) for h in (self.hook, self.neurons) if h]
        if not self.stream.language or None in layers:
            return {}
        return {"stop_at_layer": max(layers)}

    def activations(self, batch: list) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """({hook: [rows, width]}, the kept mask [windows, n_ctx] (language), the inputs)."""
        hooks = [h for h in (self.hook, self.neurons) if h]
        if self.stream.language:
            x = torch.stack([torch.as_tensor(w.tokens, dtype=torch.long) for w in batch])
            pos = torch.arange(x.shape[1])
            keep = pos[None] < torch.as_tensor([w.real for w in batch])[:, None]
            if self.stream.position is not None:
                keep &= pos[None] == self.stream.position
            if self.stream.drop_bos:
                keep[:, 0] = False
        else:
            x = torch.stack([torch.as_tensor(w.tokens) for w in batch])
            keep = torch.ones(len(batch), dtype=torch.bool)
        with torch.no_grad():
            _, cache = self.model.run_with_cache(x.to(self.device), names_filter=hooks, **self.stop_at())
        acts = {}
        for h in hooks:
            a = cache[h]
            # A sample's activations need not be as wide as the sample itself (the toy
            # world's hook_hidden is narrower than its input): only the leading axes must match.
            lead = x.shape if self.stream.language else x.shape[:1]
            if a.shape[:len(lead)] != lead or (not self.stream.language and a.ndim < 2):
                raise BadInput(f"hook {h!r} gives activations shaped {list(a.shape)}, not one vector per "
                               f"{'token' if self.stream.language else 'sample'}",
                               hint="choose a residual, MLP or attention-output hook")
            a = a.flatten(2)[keep.to(a.device)] if self.stream.language else a.flatten(1)
            acts[h] = a.float().cpu()
        return acts, keep, x

    def encode(self, acts: torch.Tensor) -> torch.Tensor:
        """The SAE's dense feature activations [rows, d_sae]."""
        with torch.no_grad():
            p = next(self.sae.parameters())
            return self.sae.encode(acts.to(p.device, p.dtype)).float().cpu()

    def top(self, acts: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per row the k largest features (indices, values; -1 and 0 in empty slots), the
        SAE's L0 and its activation mass (the sum of all its activations)."""
        sae_k = getattr(self.sae.cfg, "k", None) if self.sae.cfg.architecture() == "topk" else None
        if sae_k is None:
            f = self.encode(acts)
            values, indices = torch.topk(f, self.k, dim=-1)
            l0, mass = torch.count_nonzero(f, dim=-1), f.sum(-1)
        else:
            values, indices = self._sae_topk(acts, int(sae_k))
            l0, mass = torch.count_nonzero(values, dim=-1), values.sum(-1)
            values, indices = values[:, :self.k], indices[:, :self.k]
            if self.k > sae_k:  # more slots than the SAE ever fills: they stay empty
                pad = self.k - int(sae_k)
                values = torch.nn.functional.pad(values, (0, pad))
                indices = torch.nn.functional.pad(indices, (0, pad))
        empty = values <= 0
        return {"indices": indices.to(torch.int32).masked_fill(empty, -1), "values": values.masked_fill(empty, 0.0),
                "l0": l0.to(torch.int32), "mass": mass.float()}

    def _sae_topk(self, acts: torch.Tensor, sae_k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A TopK SAE's own top-k, sorted, without the dense [rows, d_sae] tensor its
        `encode` scatters them into: `encode` runs with its TopK activation swapped
        for one that hands back the values and indices (the round-trip tests hold it
        to `encode`)."""
        class Keep(torch.nn.Module):
            def forward(self, hidden_pre):
                values, indices = torch.topk(hidden_pre, sae_k, dim=-1)
                return values.relu(), indices

        p = next(self.sae.parameters())
        dense = self.sae.activation_fn
        self.sae.activation_fn = Keep()
        try:
            with torch.no_grad():
                values, indices = self.sae.encode(acts.to(p.device, p.dtype))
        finally:
            self.sae.activation_fn = dense
        return values.float().cpu(), indices.cpu()


def choose_k(enc: Encoder, sample: list, mass: float) -> int:
    """The least k whose top-k keeps `mass` of the activation mass over the sample."""
    f = torch.cat([enc.encode(enc.activations(sample[i:i + 16])[0][enc.hook]) for i in range(0, len(sample), 16)])
    curve = f.clamp(min=0).sort(-1, descending=True).values.double().cumsum(-1).sum(0)
    total = curve[-1]
    if total <= 0:
        return 1
    return int((curve < mass * total).sum()) + 1


# --------------------------------------------------------------------------- one shard


def _token_table(window_batch: list, first_window: int, keep, x, tokenizer, decoded: dict, labels) -> dict:
    n = len(window_batch)
    if keep.ndim == 2:
        where = keep.nonzero()
        w, p = where[:, 0].numpy(), where[:, 1].numpy()
        ids = x[keep].numpy()
    else:
        w, p, ids = np.arange(n), np.zeros(n, np.int64), None
    cols = {"doc": np.asarray([window_batch[i].doc for i in w], np.int64),
            "window": (first_window + w).astype(np.int64), "pos": p.astype(np.int32)}
    if ids is not None:
        cols["token_id"] = ids.astype(np.int32)
        if tokenizer is not None:
            for t in set(ids.tolist()) - decoded.keys():
                decoded[t] = tokenizer.decode([t])
            cols["token"] = [decoded[t] for t in ids.tolist()]
    if labels is not None:
        cols |= labels(ids, x[torch.as_tensor(w)])
    return cols


def run_shard(enc: Encoder, shard: list, first_window: int, batch_size: int, tokenizer, decoded, labels, dtype,
              on_rows=None) -> tuple[dict, dict, Any]:
    """Top-k features, the token table and the neurons (or None) of one shard's windows."""
    parts, tables, neurons = [], [], []
    for i in range(0, len(shard), batch_size):
        batch = shard[i:i + batch_size]
        acts, keep, x = enc.activations(batch)
        parts.append(enc.top(acts[enc.hook]))
        tables.append(pl.DataFrame(_token_table(batch, first_window + i, keep, x, tokenizer, decoded, labels)))
        if enc.neurons:
            neurons.append(acts[enc.neurons])
        if on_rows:
            on_rows(len(parts[-1]["l0"]))
    top = {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}
    top["values"] = top["values"].astype(np.dtype(dtype))
    top["indices"][top["values"] <= 0] = -1  # float16 rounds the smallest values to 0: empty slots
    # Relaxed: a world's label column may come out untyped (all null) in one batch and typed in the next.
    return top, pl.concat(tables, how="vertical_relaxed"), torch.cat(neurons).numpy() if neurons else None


# --------------------------------------------------------------------------- the run


def open_all(cfg: ExtractConfig, model=None, sae=None):
    """(cfg with its corpus files listed, model, world or None, SAE handle), each
    checked, with the model's options taken from the SAE; all errors come here, before
    the corpus is read, and those that need no model before it loads. A `model` or
    `sae` passed in is used as it is (the model where it already runs)."""
    src, w = cfg.source, None
    if model is None and src is not None:
        # Before the SAE, whose absence would otherwise be blamed for a mistyped world.
        if (problem := models.unknown_source(src)) is not None:
            raise problem
        if worlds.is_world(src):
            w = worlds.open_world(src)
            if cfg.reads_files and not w.spec.load().LANGUAGE:
                raise BadInput(f"world {w.name!r} is not a language model and takes no corpus")
        else:
            _needs_corpus(cfg, src)
    if cfg.corpus:
        cfg = replace(cfg, corpus=corpus_files(cfg.corpus))
    if sae is not None:
        handle = models.SAEHandle(models._flat(sae), cfg.sae or "in-memory")
    else:
        handle = models.open_sae(cfg.sae, cfg.sae_id, w, cfg.device)
    if model is not None:
        if cfg.model_kwarg:
            raise BadInput("--model-kwarg applies where codec loads the model, not to a model passed in",
                           hint="load the model with those options yourself")
        _needs_corpus(cfg, cfg.source or "the model passed in")
        if getattr(model, "tokenizer", None) is None:
            raise BadInput("the model passed in has no tokenizer to read the corpus with",
                           hint="give it one: HookedTransformer(cfg, tokenizer=...)")
        return cfg, model.eval(), None, handle
    if src is None:
        named = getattr(handle.meta, "model_name", None)
        if not named:
            raise BadInput("no model given, and the SAE does not name one", hint="give the model as the first argument")
        src = named.removeprefix("codec-") if named.removeprefix("codec-") in worlds.WORLDS else named
        info(f"model: {src} (named by the SAE)")
    if w is None and not worlds.is_world(src):
        _needs_corpus(cfg, src)  # the model the SAE names: still before it loads
    kwargs = model_kwargs(cfg.model_kwarg, handle.meta)
    # transformer-lens prints as it loads; stdout is for data, so its lines become messages.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        model, w = models.open_model(src, kwargs)
        model = (model if cfg.device == "cpu" else model.to(cfg.device)).eval()  # loaders give CPU models
    for line in printed.getvalue().splitlines():
        info(line)
    if kwargs and (w is not None or Path(src).is_dir() and (Path(src) / "tokenizer").is_dir()):
        info(f"note: {src} is stored already processed; the model options do not apply")
    return cfg, model, w, handle


def _needs_corpus(cfg: ExtractConfig, model: str) -> None:
    if not cfg.reads_files:
        raise BadInput(f"{model} is not a world and brings no data of its own: give it a corpus",
                       hint="--corpus FILE|DIR|'GLOB' (.txt, .jsonl, .parquet), or --dataset NAME")


def _recorded(cfg: ExtractConfig, world) -> ExtractConfig:
    """`cfg` as the manifest keeps it: local paths made absolute, so that a later stage
    run from another directory (squeeze, reopening the SAE) finds what was read. Names
    that are not paths here (built-in worlds, a world's SAEs, hub names) stay as given."""
    def local(name: str | None, is_name: bool) -> str | None:
        return str(Path(name).resolve()) if name is not None and not is_name and Path(name).exists() else name

    own_sae = world is not None and cfg.sae in world.saes and cfg.sae_id is None
    return replace(cfg, source=local(cfg.source, cfg.source in worlds.WORLDS), sae=local(cfg.sae, own_sae),
                   corpus=[p.resolve() for p in cfg.corpus])


def check_hooks(model, hooks: list[str]) -> None:
    for h in hooks:
        if h not in model.hook_dict:
            near = difflib.get_close_matches(h, list(model.hook_dict), n=3) or sorted(model.hook_dict)[:3]
            raise BadInput(f"the model has no hook {h!r}", hint=f"did you mean {', '.join(near)}?")


@talk.reports
def extract(cfg: ExtractConfig, model=None, sae=None) -> dict:
    """Run an extraction (or this rank's part of one) into `cfg.out`; returns the summary.

    `model` (a transformer-lens HookedTransformer with its tokenizer) and `sae` (a
    sae-lens SAE), when given, are read as they are, in memory, instead of loading
    `cfg.source` and `cfg.sae`; those then only name them in the manifest. A model
    passed in reads `cfg.corpus` or `cfg.dataset`, and runs where it already is."""
    index, ranks = rank(cfg)
    out = output(cfg.out, index, ranks)
    check_output(out, "features")
    given = model
    cfg, model, world, handle = open_all(cfg, model, sae)
    sae = handle.sae
    hook = cfg.hook or getattr(handle.meta, "hook_name", None) or (world and world.saes.get(world.default_sae))
    if not hook:
        raise BadInput("the SAE's config names no hook", hint="give --hook")
    check_hooks(model, [h for h in (hook, cfg.neurons) if h])
    d_sae, d_in = int(sae.cfg.d_sae), int(sae.cfg.d_in)
    if cfg.k is not None and cfg.k > d_sae:
        raise BadInput(f"--k {cfg.k} is larger than the SAE's width {d_sae}")
    language = world is None or world.spec.load().LANGUAGE
    if not language and cfg.reads_files:
        raise BadInput(f"world {world.name!r} is not a language model and takes no corpus")
    n_ctx = _context(cfg, model, handle, world, language)
    own_stream = world is not None and not cfg.reads_files  # world documents start with BOS
    position = getattr(world.spec.load(), "POSITION", None) if own_stream else None
    stream = Stream(language, n_ctx, language and position is None and (own_stream or cfg.bos) and not cfg.keep_bos,
                    cfg.tokens, position)
    device = cfg.device if given is None else str(next(model.parameters()).device)
    enc = Encoder(model, sae, hook, cfg.neurons, stream, device)

    k, k_source = (cfg.k, "user") if cfg.k else (handle.k, "sae") if handle.k else (None, "mass")
    head, rows = [], 0
    for window in windows(cfg, stream, model, world):  # one window to probe, or enough rows to calibrate k
        head.append(window)
        rows += stream.rows(window.real)
        if k or rows >= CALIBRATION_ROWS:
            break
    if not head:
        raise BadInput("the corpus is empty: no document has a token", hint="check the files and --column")
    acts, _, _ = enc.activations(head[:1])
    if acts[hook].shape[-1] != d_in:
        raise BadInput(f"the SAE reads vectors of width {d_in}, but hook {hook!r} gives {acts[hook].shape[-1]}",
                       hint="choose the SAE's own hook, or an SAE for this model and hook")
    enc.k = min(k or choose_k(enc, head, cfg.mass), d_sae)
    if k_source == "mass":
        info(f"k = {enc.k}: keeps {cfg.mass:.0%} of the activation mass on the first {rows} tokens")

    per_shard = max(1, cfg.shard_tokens // stream.full_rows())
    labels = _labels(world) if not cfg.reads_files else None
    attrs = {"d_sae": d_sae, "d_in": d_in, "k": enc.k, "k_source": k_source, "hook": hook,
             "neurons": cfg.neurons, "language": language, "context": n_ctx if language else None,
             "model": f"codec-{world.name}" if world else str(cfg.source or handle.meta.model_name
                                                               if given is None else cfg.source or given.cfg.model_name),
             "sae": {"origin": handle.origin, "fingerprint": handle.fingerprint(),
                     "architecture": sae.cfg.architecture(), "hook": getattr(handle.meta, "hook_name", None)},
             "part": {"index": index, "of": ranks} if ranks > 1 else None}
    params = config.to_dict(_recorded(cfg, world))
    identity = {"params": {k: v for k, v in params.items() if k not in ("resume", "out")},
                "attrs": attrs}
    inputs = [handle.artifact] if handle.artifact is not None else []
    if world is not None and all(a.fingerprint != world.artifact.fingerprint for a in inputs):
        inputs.append(world.artifact)
    started = time.perf_counter()
    with ArtifactWriter(out, "features", command="codec extract", params=params, inputs=inputs,
                        attrs=attrs, resume=cfg.resume, resumable="shards/*.safetensors") as w:
        stats, done = _resume(w.path, identity, d_sae, cfg.resume)
        resumed = stats.rows
        decoded: dict[int, str] = {}
        tokenizer = getattr(model, "tokenizer", None) if language else None
        mine = (cfg.tokens + ranks - 1) // ranks
        with progress(f"extract @ {hook}" + (f" (rank {index}/{ranks})" if ranks > 1 else ""), mine, unit="tokens",
                      completed=min(stats.rows, mine)) as bar:
            it = windows(cfg, stream, model, world)
            for j in itertools.count():
                shard = list(itertools.islice(it, per_shard))
                if not shard:
                    break
                if j % ranks != index or j in done:
                    continue
                top, table, neurons = run_shard(enc, shard, j * per_shard, cfg.batch_size, tokenizer, decoded,
                                                labels, cfg.dtype, bar.advance)
                if neurons is not None:
                    w.write_tensors(NEURONS.format(j), {"acts": neurons})
                w.write_table(TOKENS.format(j), table)
                path = w.write_tensors(SHARD.format(j), top)  # last: the shard is whole once it is there
                stats.add(top, path.stat().st_size)
        if stats.rows == 0:
            raise BadInput(f"rank {index} of {ranks} has no shard to extract",
                           hint="use fewer ranks, or a smaller --shard-tokens")
        w.write_table("features.parquet", stats.table())
        w.attrs.update(stats.summary())
        (w.path / "run.json").unlink()
    summary = {"out": str(out), "k": enc.k, "hook": hook, **stats.summary()}
    summary["tokens_per_s"] = (stats.rows - resumed) / max(time.perf_counter() - started, 1e-9)
    return summary


def _resume(path: Path, identity: dict, d_sae: int, resume: bool) -> tuple[Stats, set[int]]:
    """The shards a previous run finished (and their statistics); refuses a run made
    with other settings, and clears what an unfinished shard left behind."""
    run = path / "run.json"
    stats, done = Stats(d_sae), set()
    if resume and not run.is_file() and any(path.iterdir()):
        # Killed while finishing (run.json goes first): nothing here can be vouched for.
        info("the partial run cannot be resumed; starting afresh")
        for p in sorted(path.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
    if resume and run.is_file():
        before = json.loads(run.read_text())
        if before != json.loads(canonical_json(identity)):
            changed = sorted(k for k in before["params"].keys() | identity["params"].keys()
                             if before["params"].get(k) != identity["params"].get(k)) or ["the SAE or model"]
            raise BadInput(f"cannot resume: the partial run was made with different settings ({', '.join(changed)})",
                           hint="resume with the original options, or drop --resume")
        done = {shard_number(p.name) for p in (path / "shards").glob("*.safetensors")}
        for p in sorted(path.rglob("*")):  # an unfinished shard's files, temporaries, final tables
            part = p.relative_to(path).parts[0]
            if p.is_file() and p != run and (part not in SHARD_DIRS or p.name.startswith(".")
                                             or shard_number(p.name) not in done):
                p.unlink()
        for j in sorted(done):
            shard = path / SHARD.format(j)
            try:
                tensors = load_file(shard)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # damaged after it was written: extract it again
                info(f"{shard} is damaged; extracting shard {j} again")
                for name in (SHARD, TOKENS, NEURONS):
                    (path / name.format(j)).unlink(missing_ok=True)
                done.discard(j)
                continue
            stats.add(tensors, shard.stat().st_size)
        if done:
            info(f"resuming after {len(done)} finished shard(s), {stats.rows} rows")
    run.write_bytes(canonical_json(identity))
    return stats, done


def _context(cfg: ExtractConfig, model, handle, world, language: bool) -> int:
    if not language:
        return 1
    if world is not None and not cfg.reads_files:
        return int(world.config()[1].n_ctx)
    n_ctx = cfg.context or getattr(handle.meta, "context_size", None) or 128
    most = int(model.cfg.n_ctx)
    if n_ctx > most:
        if cfg.context:
            raise BadInput(f"--context {n_ctx} is longer than the model's context ({most})")
        n_ctx = most
    return int(n_ctx)


def _labels(world):
    """The world's ground-truth labels for rows, or None."""
    if world is None:
        return None
    module, cfg = world.config()
    # A world that reads one position labels a row by its whole input (modadd: a and b).
    whole = not module.LANGUAGE or getattr(module, "POSITION", None) is not None
    return lambda ids, inputs: module.labels(cfg, inputs if whole else ids)
