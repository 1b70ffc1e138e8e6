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
