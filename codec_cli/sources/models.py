"""Where activations come from: a built-in world, or a transformer-lens model over a corpus.

    toy, themes              a built-in world (shipped), its own data generator
    path/to/world/           a world built with `codec world build`
    path/to/model/           a transformer-lens model saved by codec (config.json,
                             model.safetensors, tokenizer/), over --corpus files
    path/to/hf-model/        a Hugging Face save_pretrained directory (hf.py), over --corpus files
    gpt2, pythia-70m, …      a transformer-lens model by hub name (where a hub is
                             reachable), over --corpus files

Every source is a `Source`: a transformer-lens `HookedRootModule` and a function
`inputs(step, n)` giving the n model inputs of step `step` of the stream. Inputs
depend only on the step, so resumed runs see the same data as uninterrupted ones.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file

from codec_cli import worlds
from codec_cli.artifacts import open_artifact
from codec_cli.errors import BadInput, CodecError
from codec_cli.sources import hf
from codec_cli.sources.corpora import corpus_files, read_documents, token_windows

# transformer-lens and sae-lens (seconds to import) are imported by the functions that load
# a model or an SAE from them: the worlds import this module for `torch_threads`, and
# `codec squeeze --no-faithfulness` for `check_device`, needing neither.


@dataclass
class Source:
    name: str
    """The model's name, as recorded in an SAE's metadata."""
    model: Any
    """A transformer-lens HookedRootModule (a HookedTransformer for language models)."""
    inputs: Callable[[int, int], Any]
    """(step, n) -> the n inputs of that step: token windows [n, n_ctx] or samples [n, d]."""
    language: bool
    """Token sequences with BOS at position 0 (dropped from activations)."""
    default_hook: str | None = None
    """The hook to read when none is given (a world's first SAE's)."""
    position: int | None = None
    """The one position of each input whose activations are rows (modadd: the `=` token);
    None: every position after BOS (language models) or the whole sample."""


HELD_OUT = 10**9
"""Stream steps from here on are evaluation data that training never sees."""


def _cycle(windows) -> Callable[[int, int], Any]:
    """Training steps cycle through most windows; steps >= HELD_OUT read the rest."""
    n_eval = min(256, len(windows) // 10)
    if n_eval == 0:
        raise BadInput(f"the corpus makes only {len(windows)} context windows; codec needs at least 10 "
                       "(a tenth is held out for evaluation)", hint="give more text, or a smaller --context")
    train, held_out = windows[:-n_eval], windows[-n_eval:]

    def inputs(step: int, n: int):
        pool, step = (held_out, step - HELD_OUT) if step >= HELD_OUT else (train, step)
        return pool[(torch.arange(n) + step * n) % len(pool)]

    return inputs


def unknown_source(source: str) -> BadInput | None:
    """The error for a `source` that is no world, no directory and no transformer-lens
    model name, or None when it may be one of those. Checked before anything that would
    otherwise complain about what such a source lacks (a --corpus, an --sae)."""
    path = Path(source)
    if worlds.is_world(source) or path.is_dir():
        return None
    if path.exists():
        return BadInput(f"{source}: is a file, not a model directory",
                        hint="give a built-in world, a model directory, or a transformer-lens model name")
    if path.suffix or "/" in source and not _looks_like_hub_name(source):
        return BadInput(f"{source}: no such model directory",
                        hint="give a built-in world, a model directory, or a transformer-lens model name")
    official = _official_names()
    if official is None or source.lower() in {n.lower() for n in official}:  # as TL does, whatever the case
        return None
    near = difflib.get_close_matches(source, [*worlds.WORLDS, *official], n=3, cutoff=0.6)
    return BadInput(f"no world or model named {source!r}",
                    hint=(f"did you mean {', '.join(near)}? " if near else "")
                    + f"built-in worlds: {', '.join(worlds.WORLDS)}; or give a model directory "
                    "or a transformer-lens model name")


def _official_names() -> set[str] | None:
    """Every name transformer-lens's from_pretrained accepts (official names and aliases),
    or None where transformer-lens cannot say; a name outside it could only fail later."""
    try:
        from transformer_lens import loading_from_pretrained as loading
    except Exception:
        return None
    names = set(getattr(loading, "OFFICIAL_MODEL_NAMES", ()))
    for aliases in getattr(loading, "MODEL_ALIASES", {}).values():
        names.update(aliases)
    return names or None


def open_model(source: str, kwargs: dict | None = None):
    """The model named by `source` (see the module docstring) and its world, or None.

    `kwargs` are transformer-lens `from_pretrained` options (e.g. center_writing_weights);
    they apply where weights are processed on loading: hub names and Hugging Face
    directories, not worlds or codec's own (already processed) directories."""
    path = Path(source)
    if worlds.is_world(source):
        w = worlds.open_world(source)
        return w.model(), w
    if path.is_dir() and (path / "model.safetensors").is_file() and (path / "tokenizer").is_dir():
        # codec's transformer-lens directory format. Imported here: worlds.themes imports
        # this module, and transformer-lens, at its top.
        from codec_cli.worlds.themes import load_model

        safetensors_shapes(path / "model.safetensors")  # load_model would fail deep in safetensors
        return load_model(path), None
    if path.is_dir():
        return _from_hf_dir(path, kwargs or {}), None
    if (problem := unknown_source(source)) is not None:
        raise problem
    return _from_hub(source, kwargs or {}), None


def _looks_like_hub_name(name: str) -> bool:
    """`org/model` is a hub name; `./x`, `a/b/c` or `/abs` are paths that do not exist."""
    return name.count("/") == 1 and not name.startswith((".", "/"))


def load_source(source: str, corpus: list[Path] = (), column: str = "text", context: int = 64) -> Source:
    """Open `source` for training (see the module docstring); errors are one line, before heavy work."""
    path = Path(source)
    if (problem := unknown_source(source)) is not None:
        raise problem
    if worlds.is_world(source):
        module, cfg = worlds.open_world(source).config()
        if corpus and not module.LANGUAGE:
            raise BadInput(f"world {source!r} is not a language model and takes no --corpus")
    elif not corpus:
        raise BadInput(f"model {source!r} needs a --corpus to read activations from",
                       hint="give text, .jsonl or .parquet files")
    if corpus:
        corpus = corpus_files(list(corpus))  # a missing or empty corpus is named before the model loads
    model, w = open_model(source)
    if w is not None and not corpus:
        return Source(f"codec-{w.name}", model, lambda step, n: module.inputs(cfg, step, n), module.LANGUAGE,
                      w.saes[w.default_sae], getattr(module, "POSITION", None))
    windows = token_windows(model.tokenizer, read_documents(corpus, column), min(context, model.cfg.n_ctx))
    # The name goes into the SAE's cfg.json, where `codec extract --sae DIR` looks for the
    # model: a local directory is recorded whole, so it still opens from anywhere.
    name = f"codec-{w.name}" if w else (str(path.resolve()) if path.is_dir() else source)
    return Source(name, model, _cycle(windows), True, w.saes[w.default_sae] if w else None)


def _from_hub(name: str, kwargs: dict):
    """A transformer-lens model by hub name; needs a reachable hub (or its local cache)."""
    from transformer_lens import HookedTransformer

    try:
        return HookedTransformer.from_pretrained(name, device="cpu", **kwargs)
    except Exception as e:  # unknown name, no network: say which, in one line
        raise BadInput(f"cannot load model {name!r}: {type(e).__name__}: {str(e).splitlines()[0][:200]}",
                       hint="give a built-in world, a local model directory, or a transformer-lens model name") from None


def _from_hf_dir(path: Path, kwargs: dict):
    if not (path / "config.json").is_file():
        raise BadInput(f"{path}: not a model directory (no config.json)",
                       hint="give a world, a save_pretrained directory, or a transformer-lens model name")
    _read_cfg(path / "config.json")
    check_weights(path)
    return hf.load(path, **kwargs)


def check_weights(path: Path) -> None:
    """Refuse a directory whose weights are not safetensors: codec never unpickles a
    file (`torch.load` can run code), so say so before transformers gets to it."""
    weights = sorted(path.glob("*.safetensors"))
    if weights:
        for w in weights:  # a damaged file is named here, not deep inside transformers
            safetensors_shapes(w)
        return
    pickled = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl"))
    if pickled:
        shown = ", ".join(pickled[:3]) + (" …" if len(pickled) > 3 else "")
        raise BadInput(f"{path}: the weights are pickled ({shown}); codec reads safetensors only",
                       hint="convert them: AutoModelForCausalLM.from_pretrained(dir).save_pretrained(dir, "
                            "safe_serialization=True)")
    raise BadInput(f"{path}: no model weights (no *.safetensors file)",
                   hint="give a save_pretrained directory with model.safetensors")


@contextmanager
def torch_threads(n: int):
    """Run the block with n torch CPU threads, then restore the caller's count. Worlds train
    on a fixed count: CPU reductions, and so the bytes written, depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def stop_layer(hook: str) -> int | None:
    """Blocks needed to reach `hook` (blocks.L.… needs L+1), so later ones are not run."""
    m = re.match(r"blocks\.(\d+)\.", hook)
    return int(m.group(1)) + 1 if m else None


def activations(src: Source, hook: str, step: int, n: int):
    """Activations at `hook` for step `step`: [rows, d], BOS positions dropped."""
    kwargs = {"stop_at_layer": stop_layer(hook)} if src.language and stop_layer(hook) else {}
    with torch.no_grad():
        _, cache = src.model.run_with_cache(src.inputs(step, n), names_filter=hook, **kwargs)
    if hook not in cache:
        hooks = sorted(src.model.hook_dict)
        raise BadInput(f"the model has no hook {hook!r}",
                       hint=f"its hooks include {', '.join(hooks[:6])}{' …' if len(hooks) > 6 else ''}")
    acts = cache[hook]
    if acts.ndim != (3 if src.language else 2):
        raise BadInput(f"hook {hook!r} has shape {list(acts.shape)}; codec reads activations shaped "
                       f"{'[batch, position, width]' if src.language else '[batch, width]'}",
                       hint="choose a residual, MLP or attention-output hook")
    if src.position is not None:
        acts = acts[:, src.position]
    elif src.language:
        acts = acts[:, 1:]
    return acts.reshape(-1, acts.shape[-1])


# --------------------------------------------------------------------------- SAEs


@dataclass
class SAEHandle:
    """An opened SAE and where it came from."""

    sae: Any
    """A sae-lens SAE (any architecture), in eval mode."""
    origin: str
    """How it was named: `world:NAME`, a directory, or `RELEASE/ID` on the hub."""
    artifact: Any = None
    """The codec artifact it is (a world, or an `sae` from `codec sae train`), for lineage."""

    @property
    def meta(self):
        return self.sae.cfg.metadata

    @property
    def k(self) -> int | None:
        """The SAE's own number of active latents, for TopK SAEs."""
        k = getattr(self.sae.cfg, "k", None)
        return int(k) if k is not None and self.sae.cfg.architecture() == "topk" else None

    def fingerprint(self) -> str:
        """sha256 over the weights (names, dtypes, shapes, bytes): the same SAE gives the
        same fingerprint whichever format or place it was loaded from."""
        h = hashlib.sha256()
        for name, tensor in sorted(self.sae.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            h.update(f"{name}:{t.dtype}:{list(t.shape)}\n".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
        return "sha256:" + h.hexdigest()


def check_device(device: str) -> str:
    """`device` if torch can run on it here; else one line saying what to give instead."""
    hint = "use --device cpu, or cuda / cuda:N where a GPU is present"
    try:
        kind = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise BadInput(f"--device {device!r} is not a device torch knows", hint=hint) from None
    if kind.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise BadInput(f"--device {device}: no CUDA device is available here", hint="use --device cpu")
        if kind.index is not None and kind.index >= count:
            raise BadInput(f"--device {device}: this machine has {count} CUDA device(s)",
                           hint=f"use cuda:0 … cuda:{count - 1}")
    elif kind.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise BadInput(f"--device {device}: MPS is not available here", hint="use --device cpu")
    elif kind.type not in ("cpu", "cuda", "mps"):
        raise BadInput(f"--device {device}: codec runs on cpu, cuda or mps", hint=hint)
    return device


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape, read from a safetensors file's header alone (no torch), so
    that a damaged or truncated file is named before any loader trips over it."""
    damaged = "the file is damaged or incomplete; save or download it again"
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 2 <= n <= size - 8:
                raise BadInput(f"{path}: not a safetensors file", hint=damaged)
            header = json.loads(f.read(n))
    except (ValueError, UnicodeDecodeError):
        raise BadInput(f"{path}: not a safetensors file (its header is not JSON)", hint=damaged) from None
    if not isinstance(header, dict):
        raise BadInput(f"{path}: not a safetensors file", hint=damaged)
    shapes, end = {}, 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            shapes[name] = [int(d) for d in entry["shape"]]
            end = max(end, int(entry["data_offsets"][1]))
        except (TypeError, KeyError, IndexError, ValueError):
            raise BadInput(f"{path}: not a safetensors file (tensor {name!r} is malformed)", hint=damaged) from None
    if end != size - 8 - n:
        said = "truncated" if end > size - 8 - n else "longer than its header says"
        raise BadInput(f"{path}: {said}: its tensors take {end:,} bytes, the file holds {size - 8 - n:,}",
                       hint=damaged)
    return shapes


def _read_cfg(path: Path) -> dict:
    """A JSON config as a dict, or one line naming the file that is not one."""
    damaged = "the directory is damaged; save or download it again"
    try:
        raw = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: not valid JSON ({str(e).splitlines()[0][:120]})", hint=damaged) from None
    if not isinstance(raw, dict):
        raise BadInput(f"{path}: should hold a JSON object", hint=damaged)
    return raw


def _size(cfg: dict, key: str, cfg_path: Path) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BadInput(f"{cfg_path}: {key} must be a positive whole number, got {value!r}",
                       hint="the SAE directory is damaged; save or download it again")
    return value


def check_sae_dir(path: Path) -> None:
    """Refuse a sae-lens or sparsify directory whose config or weights are damaged, or
    disagree, in one line naming the file (before sae-lens allocates what cfg.json says)."""
    sparsify = not (path / "sae_weights.safetensors").is_file()
    cfg_path = path / "cfg.json"
    if not cfg_path.is_file():
        raise BadInput(f"{path}: no cfg.json beside the SAE's weights", hint="give a complete SAE directory")
    cfg = _read_cfg(cfg_path)
    weights = path / ("sae.safetensors" if sparsify else "sae_weights.safetensors")
    shapes = safetensors_shapes(weights)
    d_in = _size(cfg, "d_in", cfg_path)
    if sparsify:
        d_sae = _size(cfg, "num_latents", cfg_path) if cfg.get("num_latents") else None
        name, want = "encoder.weight", [d_sae, d_in]
    else:
        d_sae = _size(cfg, "d_sae", cfg_path)
        name, want = "W_enc", [d_in, d_sae]
    got = shapes.get(name)
    if got is not None and any(w is not None and w != g for w, g in zip(want, got)):
        said = f"d_in={d_in}" + (f", {'num_latents' if sparsify else 'd_sae'}={d_sae}" if d_sae else "")
        raise BadInput(f"{cfg_path} says {said}, but {weights.name} holds {name} of shape {got}",
                       hint="the SAE directory is damaged or mixed up; save or download it again")


def load_sae_dir(path: Path, device: str = "cpu", **kw):
    """sae-lens's loader, after `check_sae_dir`; what it still refuses is one line naming the directory."""
    from sae_lens import SAE

    check_sae_dir(path)
    try:
        return SAE.load_from_disk(path, device=device, **kw)
    except BadInput:
        raise
    except (ValueError, KeyError, TypeError, RuntimeError, OSError) as e:
        raise BadInput(f"{path}: sae-lens cannot load this SAE ({type(e).__name__}: "
                       f"{str(e).splitlines()[0][:160] if str(e) else 'no detail'})",
                       hint="check that cfg.json and the weights belong together") from e


def open_sae(name: str | None, sae_id: str | None = None, world=None, device: str = "cpu") -> SAEHandle:
    """An SAE by name: one of `world`'s SAEs (its default when `name` is None), a local
    directory in sae-lens or sparsify format, or a sae-lens release with `sae_id`."""
    check_device(device)
    if name is None or (world is not None and name in world.saes and sae_id is None):
        if world is None:
            raise BadInput("no --sae given, and only a built-in world brings its own SAE",
                           hint=f"give --sae (a sae-lens or sparsify directory, or a release with --sae-id), "
                                f"or a world: {', '.join(worlds.WORLDS)}")
        return SAEHandle(_flat(world.sae(name).to(device)), f"world:{world.name}/{name or world.default_sae}",
                         world.artifact)
    path = Path(name)
    if path.is_dir():
        if (path / "sae_weights.safetensors").is_file():
            sae = load_sae_dir(path, device)
        elif (path / "sae.safetensors").is_file():
            sae = load_sae_dir(path, device, converter=sparsify_loader)
        else:
            others = sorted(p.name for p in path.iterdir() if p.suffix in PICKLED)
            raise BadInput(f"{path}: not an SAE directory (no sae_weights.safetensors or sae.safetensors"
                           + (f"; {', '.join(others)} is a pickle, which codec does not load)" if others else ")"),
                           hint="give a sae-lens or sparsify SAE directory, with safetensors weights")
        artifact = open_artifact(path, "sae") if (path / "manifest.json").is_file() else None
        return SAEHandle(_flat(sae), str(path), artifact)
    if path.exists():
        raise BadInput(f"{name}: is a file; --sae takes the SAE's directory", hint=f"--sae {path.parent}")
    if sae_id is None:
        raise BadInput(f"{name}: no such SAE directory, and no --sae-id for a sae-lens release",
                       hint="e.g. --sae gpt2-small-res-jb --sae-id blocks.8.hook_resid_pre")
    return SAEHandle(_flat(_sae_from_hub(name, sae_id, device)), f"{name}/{sae_id}")


def reopen_sae(art, name: str | None = None, sae_id: str | None = None, device: str = "cpu",
               hint: str = "name it with --sae (and --sae-id)"):
    """(SAEHandle, world or None): the SAE a features artifact was extracted with, where the
    extraction found it or under `name` / `sae_id`, refused unless its weights' hash is the one
    recorded."""
    sae_attrs = art.attrs.get("sae") or {}
    params = art.manifest["params"]
    params = params.get("extract", params)  # a merged extraction keeps its parts' settings there
    name, sae_id = (name, sae_id) if name else (params.get("sae"), params.get("sae_id"))
    source = params.get("source")
    if not sae_attrs.get("fingerprint"):
        raise BadInput(f"{art.path} does not say which SAE made it", hint=hint)
    try:
        world = worlds.open_world(source) if source and worlds.is_world(source) else None
        handle = open_sae(name, sae_id, world, device)
    except CodecError as e:
        raise BadInput(f"cannot reopen the SAE these features came from ({sae_attrs.get('origin')}): {e}",
                       hint=hint) from None
    if handle.fingerprint() != sae_attrs["fingerprint"]:
        raise BadInput(f"the SAE {handle.origin} is not the one these features were extracted with", hint=hint)
    return handle, world


PICKLED = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
"""Weight files that are pickles: loading one can run code, so codec reads safetensors only."""


def _flat(sae):
    """Eval mode, reading hook_z activations already flattened to [.., n_heads × d_head]
    (extract flattens every hook's trailing dimensions; sae-lens would do it again)."""
    if getattr(sae, "hook_z_reshaping_mode", False):
        sae.turn_off_forward_pass_hook_z_reshaping()
    return sae.eval()


def _sae_from_hub(release: str, sae_id: str, device: str):
    from sae_lens import SAE

    try:
        return SAE.from_pretrained(release, sae_id, device=device)  # sae-lens 6: the SAE alone
    except Exception as e:  # unknown release or id, no network
        raise BadInput(f"cannot load SAE {release}/{sae_id}: {type(e).__name__}: {str(e).splitlines()[0][:200]}",
                       hint="check the release and --sae-id (sae-lens's pretrained_saes.yaml lists them)") from None


def sparsify_loader(path: str | Path, device: str = "cpu", cfg_overrides: dict | None = None):
    """A sae-lens disk converter for EleutherAI sparsify directories (cfg.json, sae.safetensors).

    sae-lens 6.54's own `sparsify_disk_loader` transposes sparsify's W_dec, which is
    already [d_sae, d_in], and skips the b_dec that sparsify subtracts before encoding;
    it also refuses hookpoint folders other than layers.N. This one reads the weights
    as sparsify's `SparseCoder.encode` uses them (tests check it against that code)."""
    path = Path(path)
    raw = _read_cfg(path / "cfg.json")
    if raw.get("transcode") or raw.get("skip_connection"):
        raise BadInput(f"{path}: a sparsify transcoder or skip connection; codec reads plain SAEs")
    sd = load_file(path / "sae.safetensors", device=device)
    run = path.parent / "config.json"
    run = _read_cfg(run) if run.is_file() else {}
    d_in = int(raw["d_in"])
    d_sae = int(raw.get("num_latents") or d_in * raw["expansion_factor"])
    cfg = {"architecture": "topk", "d_in": d_in, "d_sae": d_sae, "k": int(raw["k"]), "dtype": "float32",
           "device": device, "apply_b_dec_to_input": True, "normalize_activations": "none",
           "rescale_acts_by_decoder_norm": False, "model_name": run.get("model"),
           "hook_name": sparsify_hook(path.name), "context_size": run.get("ctx_len"), "prepend_bos": True,
           # sparsify trains on the raw Hugging Face hidden states, not transformer-lens's centred ones
           "model_from_pretrained_kwargs": {"center_writing_weights": False}}
    cfg.update(cfg_overrides or {})
    cfg["dtype"] = "float32"
    state = {"W_enc": sd["encoder.weight"].T.contiguous().float(), "b_enc": sd["encoder.bias"].float(),
             "W_dec": sd["W_dec"].float(), "b_dec": sd["b_dec"].float()}
    return cfg, state


def sparsify_hook(hookpoint: str) -> str | None:
    """The transformer-lens hook of a sparsify hookpoint folder, where it is unambiguous."""
    if hookpoint == "embed_tokens":
        return "hook_embed"
    m = re.fullmatch(r"(?:gpt_neox\.|model\.|transformer\.)?(?:layers|h)\.(\d+)(\.mlp)?", hookpoint)
    if m is None:
        return None
    return f"blocks.{m.group(1)}.hook_{'mlp_out' if m.group(2) else 'resid_post'}"
