"""Resumable training checkpoints: a module, its optimiser and the loop's own state, in
one safetensors file (never pickle).

The step, the history and the run's identity ride in the file's metadata, so one rename
commits all of it. The metadata also carries a sha256 of every tensor and of the rest of
the metadata, checked on load: a damaged or truncated checkpoint is refused in one line
rather than resumed with wrong weights. A checkpoint made with other settings than the
run resuming it is refused with the names of the settings that differ.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from codec_cli.errors import BadInput

FILE = "state.safetensors"


@dataclass
class State:
    """What a checkpoint holds besides the module's and the optimiser's tensors."""

    step: int = 0
    history: list[dict] = field(default_factory=list)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    """The loop's own tensors (e.g. how long each SAE latent has been dead)."""


def digest(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> str:
    """sha256 over the metadata and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data if t.numel() else b"")
    return h.hexdigest()


def save(path: Path, module: torch.nn.Module, opt: torch.optim.Optimizer, state: State, run: dict) -> None:
    tensors = {f"model.{k}": v.detach().cpu().clone() for k, v in module.state_dict().items()}
    opt_state = opt.state_dict()
    for i, values in opt_state["state"].items():
        for key, value in values.items():
            tensors[f"opt.{i}.{key}"] = torch.as_tensor(value).detach().cpu().clone()
    tensors |= {f"extra.{k}": v.detach().cpu().clone() for k, v in state.extra.items()}
    meta = {"step": str(state.step), "history": json.dumps(state.history), "run": json.dumps(run, sort_keys=True),
            "param_groups": json.dumps(opt_state["param_groups"])}
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f".{FILE}.tmp"
    save_file(tensors, tmp, metadata=meta | {"sha256": digest(tensors, meta)})
    tmp.replace(path / FILE)


def load(path: Path, module: torch.nn.Module, opt: torch.optim.Optimizer, run: dict) -> State | None:
    """Restore `module` and `opt` from the checkpoint in `path`; None when there is none."""
    file = path / FILE
    if not file.is_file():
        return None
    damaged = BadInput(f"cannot resume: {file} is damaged or truncated",
                       hint="drop --resume to start afresh")
    try:
        with safe_open(file, framework="pt") as f:
            meta = dict(f.metadata() or {})
        tensors = load_file(file)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # safetensors raises its own errors, and pyo3 panics, for a bad header
        raise damaged from None
    if "param_groups" not in meta or "sha256" not in meta:
        raise BadInput(f"cannot resume: {file} was written by an older codec",
                       hint="drop --resume to start afresh")
    if meta.pop("sha256") != digest(tensors, meta):
        raise damaged
    before = json.loads(meta["run"])
    if before != run:
        changed = ", ".join(sorted(k for k in before.keys() | run.keys() if before.get(k) != run.get(k)))
        raise BadInput(f"cannot resume: the checkpoint was made with different settings ({changed})",
                       hint="resume with the original options, or drop --resume to start afresh")
    module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    opt_state: dict = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            opt_state.setdefault(int(i), {})[name] = value
    # The optimiser's own loader puts each tensor on its parameter's device and dtype.
    opt.load_state_dict({"state": opt_state, "param_groups": json.loads(meta["param_groups"])})
    return State(int(meta["step"]), json.loads(meta["history"]),
                 {k[6:]: v for k, v in tensors.items() if k.startswith("extra.")})
