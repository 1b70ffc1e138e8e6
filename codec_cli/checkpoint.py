"""Resumable training checkpoints: a module, its optimiser and the loop's own state, in
one safetensors file (never pickle).

The step, the history and the run's identity ride in the file's metadata, so one rename
commits all of it. A checkpoint made with other settings than the run resuming it is
refused with the names of the settings that differ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from codec_cli.errors import BadInput

if TYPE_CHECKING:
    import torch

FILE = "state.safetensors"


@dataclass
class State:
    """What a checkpoint holds besides the module's and the optimiser's tensors."""

    step: int = 0
    history: list[dict] = field(default_factory=list)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    """The loop's own tensors (e.g. how long each SAE latent has been dead)."""


def save(path: Path, module: torch.nn.Module, opt: torch.optim.Optimizer, state: State, run: dict) -> None:
    import torch
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().clone() for k, v in module.state_dict().items()}
    opt_state = opt.state_dict()
    for i, values in opt_state["state"].items():
        for key, value in values.items():
            tensors[f"opt.{i}.{key}"] = torch.as_tensor(value).detach().cpu().clone()
    tensors |= {f"extra.{k}": v.detach().cpu().clone() for k, v in state.extra.items()}
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f".{FILE}.tmp"
    save_file(tensors, tmp, metadata={"step": str(state.step), "history": json.dumps(state.history),
                                      "run": json.dumps(run, sort_keys=True),
                                      "param_groups": json.dumps(opt_state["param_groups"])})
    tmp.replace(path / FILE)


def load(path: Path, module: torch.nn.Module, opt: torch.optim.Optimizer, run: dict) -> State | None:
    """Restore `module` and `opt` from the checkpoint in `path`; None when there is none."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not (path / FILE).is_file():
        return None
    with safe_open(path / FILE, framework="pt") as f:
        meta = f.metadata()
    if "param_groups" not in meta:
        raise BadInput(f"cannot resume: {path / FILE} was written by an older codec",
                       hint="drop --resume to start afresh")
    before = json.loads(meta["run"])
    if before != run:
        changed = ", ".join(sorted(k for k in before.keys() | run.keys() if before.get(k) != run.get(k)))
        raise BadInput(f"cannot resume: the checkpoint was made with different settings ({changed})",
                       hint="resume with the original options, or drop --resume to start afresh")
    tensors = load_file(path / FILE)
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
