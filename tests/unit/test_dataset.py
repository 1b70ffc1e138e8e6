"""Corpora from files: each format read, windows packed within documents, bad files refused."""

from __future__ import annotations

import json

import polars as pl
import pytest

from codec_cli.worlds.themes_corpus import build_tokenizer
from codec_cli.sources.corpora import corpus_files, read_documents, token_windows
from codec_cli.errors import BadInput

DOCS = ["after monday comes tuesday . after monday comes tuesday .", "in paris we saw the comet ."]


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_each_format_reads_the_same_documents(tmp_path):
    (tmp_path / "a.txt").write_text(DOCS[0])
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"body": d, "n": 1}) for d in DOCS) + "\n\n")
    pl.DataFrame({"body": DOCS}).write_parquet(tmp_path / "c.parquet")
    assert list(read_documents([tmp_path / "a.txt"])) == DOCS[:1]
    assert list(read_documents([tmp_path / "b.jsonl"], "body")) == DOCS
    assert list(read_documents([tmp_path / "c.parquet"], "body")) == DOCS


def test_windows_are_bos_plus_tokens_within_one_document(tok):
    windows = token_windows(tok, iter(DOCS), n_ctx=5)
    # 10 words -> 2 windows of 4 (the 2-word tail is dropped); 7 words -> 1 window
    assert windows.shape == (3, 5)
    assert (windows[:, 0] == tok.bos_token_id).all()
    assert tok.decode(windows[0, 1:]) == "after monday comes tuesday"
    assert tok.decode(windows[2, 1:]) == "in paris we saw"


@pytest.mark.parametrize("name, content, column, message", [
    ("a.jsonl", '{"text": "x"}\nnot json\n', "text", "a.jsonl:2: not valid JSON"),
    ("a.jsonl", '{"body": "x"}\n', "text", "a.jsonl:1: no text field 'text'"),
    ("a.csv", "x", "text", "unknown corpus format .csv"),
    ("a.parquet", None, "text", "cannot read column 'text'"),
])
def test_bad_files(tmp_path, name, content, column, message):
    path = tmp_path / name
    if content is None:
        pl.DataFrame({"body": DOCS}).write_parquet(path)
    else:
        path.write_text(content)
    with pytest.raises(BadInput, match=message):
        list(read_documents([path], column))


def test_empty_or_short_corpus(tok, tmp_path):
    with pytest.raises(BadInput, match="no such corpus file"):
        list(read_documents([tmp_path / "missing.txt"]))
    with pytest.raises(BadInput, match="no document of at least 63 tokens"):
        token_windows(tok, iter(["tiny text"]), n_ctx=64)


def test_not_utf8(tmp_path):
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(BadInput, match="latin.txt: not UTF-8 text"):
        list(read_documents([tmp_path / "latin.txt"]))


def test_a_tenth_of_the_windows_is_held_out(tok):
    import torch

    from codec_cli.sources.models import HELD_OUT, _cycle

    windows = torch.arange(40).view(20, 2)
    inputs = _cycle(windows)
    seen = torch.cat([inputs(step, 3) for step in range(30)]).unique(dim=0)
    held = torch.cat([inputs(HELD_OUT + step, 3) for step in range(5)]).unique(dim=0)
    assert len(seen) == 18 and len(held) == 2
    assert not set(map(tuple, seen.tolist())) & set(map(tuple, held.tolist()))
    with pytest.raises(BadInput, match="only 9 context windows"):
        _cycle(windows[:9])


def test_a_corpus_may_be_a_directory_or_a_glob(tmp_path):
    (tmp_path / "b.txt").write_text(DOCS[1])
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": DOCS[0]}) + "\n")
    (tmp_path / "notes.csv").write_text("not a corpus file")
    (tmp_path / ".hidden.txt").write_text("editor droppings")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text("in paris")
    # A directory: its corpus files, sorted by name; other files and subdirectories left out.
    assert corpus_files([tmp_path]) == [tmp_path / "a.jsonl", tmp_path / "b.txt"]
    assert list(read_documents([tmp_path])) == DOCS
    assert corpus_files([str(tmp_path / "*.txt")]) == [tmp_path / "b.txt"]
    assert corpus_files([tmp_path / "**" / "*.txt"]) == [tmp_path / "b.txt", tmp_path / "sub" / "c.txt"]
    # Each file once, in the order first named.
    assert corpus_files([tmp_path / "b.txt", tmp_path]) == [tmp_path / "b.txt", tmp_path / "a.jsonl"]


@pytest.mark.parametrize("make, given, message", [
    (lambda d: (d / "empty").mkdir(), "empty", "a directory with no corpus file in it"),
    (lambda d: None, "*.parquet", "no file matches this pattern"),
    (lambda d: None, "missing.txt", "no such corpus file or directory"),
])
def test_a_corpus_that_names_nothing(tmp_path, make, given, message):
    make(tmp_path)
    with pytest.raises(BadInput, match=message):
        corpus_files([tmp_path / given])
