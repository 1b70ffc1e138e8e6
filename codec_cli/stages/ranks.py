"""Which part of a split run this process does: `--shard i --of n`, or torchrun's
RANK and WORLD_SIZE; extraction and sweeps split the same way, and `codec merge` joins."""

from __future__ import annotations

import os
from pathlib import Path

from codec_cli.errors import BadInput


def rank(cfg) -> tuple[int, int]:
    """(this process's rank, how many ranks): cfg's --shard/--of, else torchrun's environment."""
    if cfg.of is not None:
        return cfg.shard, cfg.of
    try:
        size, index = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    except ValueError:
        raise BadInput("RANK and WORLD_SIZE must be integers") from None
    return (index, size) if size > 1 else (0, 1)


def output(out: Path, index: int, ranks: int) -> Path:
    """--out with {rank} filled in; refuses a split run whose ranks would all write one place."""
    text = str(out)
    if ranks > 1 and "{rank}" not in text:
        raise BadInput(f"{ranks} ranks would all write {text}", hint="put {rank} in --out, e.g. --out parts/{rank}")
    return Path(text.replace("{rank}", str(index)))


def check_parts(arts: list, whole: str) -> None:
    """Refuse parts that are not every rank of one split run once each; `whole` names the run
    ("extraction", "sweep") in the messages."""
    if not arts:
        raise BadInput("no parts to merge", hint="e.g. codec merge parts/* --out OUT")
    for a in arts:
        if not a.attrs.get("part"):
            raise BadInput(f"{a.path} is a whole {whole}, not a part of one (made with --shard/--of)")
    of = arts[0].attrs["part"]["of"]
    ranks = sorted(a.attrs["part"]["index"] for a in arts)
    if ranks != list(range(of)) or any(a.attrs["part"]["of"] != of for a in arts):
        missing = sorted(set(range(of)) - set(ranks))
        raise BadInput(f"the parts should be ranks 0..{of - 1} once each, got {ranks}"
                       + (f" (missing {', '.join(map(str, missing))})" if missing else ""),
                       hint=f"pass every part of the one {whole}")
