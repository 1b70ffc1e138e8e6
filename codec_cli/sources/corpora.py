"""Corpora from files: plain text, JSON lines and parquet, tokenized into context windows.

    .txt / .text / .md   one document per file (blank-line paragraphs stay together)
    .jsonl               one JSON object per line; the document is its COLUMN field
    .parquet             one row per document; the document is its COLUMN column

A corpus is a list of such files, directories of them, or glob patterns (`corpus_files`).

Windows are BOS + n_ctx−1 tokens, taken from each document in turn and packed so that
none crosses a document boundary. For training (`token_windows`) a document's tail too
short to fill a window is dropped, so every position is a real token; extraction
(`context_windows`) keeps every token, padding the last window of a document and
marking which positions are real.

A hub dataset (`hub_documents`) is read as a stream, never downloaded whole.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import polars as pl
import torch

from codec_cli.errors import BadInput

TEXT_SUFFIXES = {".txt", ".text", ".md"}


def corpus_files(paths: list[Path | str]) -> list[Path]:
    """The files a corpus names, in order, each once: a file as it is, a directory's
    corpus files (those of a suffix codec reads, sorted by name, not its subdirectories)
    and a glob pattern's matches (sorted; `**` reaches into subdirectories). Fails in
    one line on a path that is not there or a directory or pattern that holds nothing."""
    readable = TEXT_SUFFIXES | {".jsonl", ".parquet"}
    kinds = ", ".join(sorted(readable))
    out: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_file():
            found = [path]
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in readable
                           and not p.name.startswith("."))
            if not found:
                raise BadInput(f"{path}: a directory with no corpus file in it ({kinds})",
                               hint="put the files there, or name them with --corpus")
        elif glob.has_magic(str(given)):
            found = sorted(Path(p) for p in glob.glob(str(given), recursive=True) if Path(p).is_file())
            if not found:
                raise BadInput(f"{given}: no file matches this pattern",
                               hint="check the pattern; quote it so that the shell leaves it to codec")
        else:
            raise BadInput(f"{path}: no such corpus file or directory",
                           hint="give .txt, .jsonl or .parquet files, a directory of them, or a glob pattern")
        out += [p for p in found if p not in out]
    return out


def read_documents(paths: list[Path], column: str = "text") -> Iterator[str]:
    """Every document of every file (files, directories or glob patterns, as
    `corpus_files` reads them), in order; one clear line for a bad file."""
    for path in corpus_files(paths):
        suffix = path.suffix.lower()
        try:
            yield from _read(path, suffix, column)
        except UnicodeDecodeError as e:
            raise BadInput(f"{path}: not UTF-8 text (byte {e.start})") from None


def _read(path: Path, suffix: str, column: str) -> Iterator[str]:
    """The documents of one file, by its format."""
    if suffix in TEXT_SUFFIXES:
        yield path.read_text(encoding="utf-8")
    elif suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise BadInput(f"{path}:{n}: not valid JSON ({e.msg})") from None
                if not isinstance(row, dict) or not isinstance(row.get(column), str):
                    raise BadInput(f"{path}:{n}: no text field {column!r}", hint="choose it with --column")
                yield row[column]
    elif suffix == ".parquet":
        try:
            frame = pl.read_parquet(path, columns=[column])
        except Exception as e:  # polars names the problem: a missing column, a damaged file
            raise BadInput(f"{path}: cannot read column {column!r} ({type(e).__name__})",
                           hint="choose the text column with --column") from None
        yield from (t if isinstance(t, str) else "" for t in frame[column].to_list())  # keep row numbers
    else:
        raise BadInput(f"{path}: unknown corpus format {suffix or '(no suffix)'}",
                       hint="use .txt, .jsonl or .parquet")


def token_windows(tokenizer, documents: Iterator[str], n_ctx: int, max_windows: int | None = None):
    """Pack documents into int64 windows [N, n_ctx], each BOS + n_ctx−1 tokens."""
    if n_ctx < 2:
        raise BadInput(f"--context must be at least 2, got {n_ctx}")
    bos = tokenizer.bos_token_id
    if bos is None:
        raise BadInput("the model's tokenizer has no BOS token")
    body = n_ctx - 1
    windows: list[list[int]] = []
    for text in documents:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids) - body + 1, body):
            windows.append([bos, *ids[start:start + body]])
            if max_windows is not None and len(windows) >= max_windows:
                return torch.tensor(windows, dtype=torch.int64)
    if not windows:
        raise BadInput(f"the corpus has no document of at least {body} tokens",
                       hint="give more text, or a smaller --context")
    return torch.tensor(windows, dtype=torch.int64)


@dataclass(frozen=True)
class Window:
    """One context window of a document, as the model will read it."""

    tokens: list[int]
    """Exactly n_ctx token ids: [BOS], then the document's tokens, then padding."""
    real: int
    """How many leading positions (BOS included) are real tokens rather than padding."""
    doc: int
    """The document's index in the corpus, counting every document read."""


def context_windows(tokenizer, documents: Iterator[str], n_ctx: int, bos: bool = True) -> Iterator[Window]:
    """Every token of every document, in windows of n_ctx (BOS first when `bos`); the
    last window of a document is padded. Empty documents give no window."""
    if n_ctx < 1 + bos:
        raise BadInput(f"--context must be at least {1 + bos}, got {n_ctx}")
    head = [tokenizer.bos_token_id] if bos else []
    if bos and head[0] is None:
        raise BadInput("the model's tokenizer has no BOS token", hint="use --no-bos")
    pad = next((t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if t is not None))
    body = n_ctx - len(head)
    for doc, text in enumerate(documents):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids), body):
            chunk = head + ids[start:start + body]
            yield Window(chunk + [pad] * (n_ctx - len(chunk)), len(chunk), doc)


def hub_documents(name: str, column: str = "text", split: str = "train") -> Iterator[str]:
    """The documents of a Hugging Face dataset (a hub name or a local dataset directory),
    streamed in order."""
    import datasets  # a second or more to import, for --dataset alone; corpora on disk need none of it

    try:
        rows = datasets.load_dataset(name, split=split, streaming=True)
        first = next(iter(rows), None)
    except Exception as e:  # unknown name, no network, bad split: one line
        raise BadInput(f"cannot open dataset {name!r}: {type(e).__name__}: {str(e).splitlines()[0][:200]}",
                       hint="check the name and --split, or pass local files with --corpus") from None
    if first is not None and not isinstance(first.get(column), str):
        raise BadInput(f"dataset {name!r} has no text column {column!r} (it has {', '.join(first)})",
                       hint="choose it with --column")
    yield from (row[column] if isinstance(row.get(column), str) else "" for row in rows)  # keep row numbers
