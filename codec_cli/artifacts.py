"""Artifacts: directories with a `manifest.json`, safetensors tensors and parquet tables.

The contract every stage reads and writes (DESIGN.md §4, schema in docs/artifacts.md):

- `ArtifactWriter` builds the directory in a hidden sibling (`.NAME.partial`) and
  swaps it into place only when everything, manifest last, is on disk; an error or
  a kill leaves no directory that `open_artifact` accepts, and never touches a good
  one that was there before.
- `open_artifact` refuses, with one line naming the file and the problem, a missing,
  foreign, damaged, truncated or newer-than-us artifact, and a kind other than the
  one asked for. File contents are checked against their sha256 as they are read.

No pickle, no `torch.load`: an artifact from a stranger is data, never code.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from codec_cli import __version__
from codec_cli.errors import ArtifactError, BadInput, CodecError

if TYPE_CHECKING:  # numpy is imported where arrays are made: the CLI starts without it
    import numpy as np

MANIFEST = "manifest.json"

SCHEMA_VERSIONS = {"features": 1, "squeezer": 1, "analysis": 1, "world": 1, "sae": 1, "comparison": 1, "themes": 1,
                   "steering": 1, "monitoring": 1, "sweep": 1}
"""The newest schema version of each kind that this codec writes and reads.
Kinds not listed (a plugin's own) are at version 1."""

TOPK_DTYPES = {"indices": ("int32",), "values": ("float32", "float16")}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def json_ready(obj: Any) -> Any:
    """Any result as strict JSON data, the one way codec does it everywhere (manifests,
    summaries, configs, --json): NaN and infinities as null (unknown, docs/artifacts.md),
    paths as strings, tuples as lists, keys as strings, numpy scalars as Python numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy and torch scalars
        return json_ready(obj.item())
    return obj


def canonical_json(obj: Any) -> bytes:
    """The one JSON spelling codec writes: `json_ready` data, sorted keys, two-space
    indent, final newline."""
    return (json.dumps(json_ready(obj), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
            + "\n").encode()


def content_fingerprint(kind: str, schema_version: int, attrs: dict, files: dict) -> str:
    """What an artifact *is*: its kind, schema, attributes and file hashes (not how it was made)."""
    core = {"kind": kind, "schema_version": schema_version, "attrs": attrs,
            "files": {name: meta["sha256"] for name, meta in files.items()}}
    return "sha256:" + sha256_bytes(canonical_json(core))


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class TopK:
    """One shard of sparse activations: per row the top-k feature indices and values.

    `indices` is int32 [n, k] with -1 in empty slots; `values` is float [n, k] with 0 there.
    """

    indices: np.ndarray
    values: np.ndarray


@dataclass
class Artifact:
    """An artifact opened read-only. Use `open_artifact` to get one."""

    path: Path
    manifest: dict
    _verified: set = field(default_factory=set, repr=False)

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def schema_version(self) -> int:
        return self.manifest["schema_version"]

    @property
    def attrs(self) -> dict:
        return self.manifest["attrs"]

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def inputs(self) -> list[dict]:
        return self.manifest["inputs"]

    def files(self, prefix: str = "") -> list[str]:
        """Names of the listed files under `prefix`, sorted."""
        return sorted(n for n in self.manifest["files"] if n.startswith(prefix))

    def read_bytes(self, name: str) -> bytes:
        """A listed file's bytes, checked against the manifest's sha256."""
        meta = self.manifest["files"].get(name)
        if meta is None:
            raise ArtifactError(self.path / name, f"not a file of this {self.kind} artifact")
        data = (self.path / name).read_bytes()
        if name not in self._verified:
            if len(data) != meta["bytes"] or sha256_bytes(data) != meta["sha256"]:
                raise ArtifactError(self.path / name, "content does not match the manifest (damaged or edited)",
                                    hint="re-run the stage that wrote it")
            self._verified.add(name)
        return data

    def verify(self) -> None:
        """Check every listed file's hash now rather than as each is read."""
        for name in self.files():
            self.read_bytes(name)

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read_bytes(name))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ArtifactError(self.path / name, f"not valid JSON ({e})") from None

    def tensors(self, name: str, expect: dict[str, tuple] | None = None) -> dict[str, np.ndarray]:
        """The tensors of a safetensors file as read-only numpy arrays.

        `expect` maps tensor name to (allowed dtype names, ndim); a mismatch is an ArtifactError.
        """
        from safetensors.numpy import load

        path = self.path / name
        arrays = _parse(path, "safetensors file", load, self.read_bytes(name))
        for key, (dtypes, ndim) in (expect or {}).items():
            a = arrays.get(key)
            if a is None:
                raise ArtifactError(path, f"has no tensor {key!r}")
            if a.dtype.name not in dtypes or a.ndim != ndim:
                raise ArtifactError(path, f"tensor {key!r} is {a.dtype.name} {list(a.shape)}, "
                                          f"expected {' or '.join(dtypes)} with {ndim} dimensions")
        for a in arrays.values():
            a.flags.writeable = False
        return arrays

    def table(self, name: str, columns: Iterable[str] = ()):
        """A parquet table as a polars DataFrame, checked for the `columns` it must have."""
        import polars as pl

        path = self.path / name
        df = _parse(path, "parquet table", lambda b: pl.read_parquet(io.BytesIO(b)), self.read_bytes(name))
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise ArtifactError(path, f"lacks column(s) {', '.join(missing)}")
        return df

    def topk(self, prefix: str = "shards/") -> Iterator[TopK]:
        """The sparse top-k shards in order, each checked by `shard`."""
        for name in self.files(prefix):
            yield self.shard(name)

    def shard(self, name: str) -> TopK:
        """One top-k shard, refused with its name unless it is what every stage assumes:
        int32 indices and float values of one shape, as wide as `attrs.k`, each index an
        empty slot (-1, holding 0) or a feature in [0, d_sae), and every value finite."""
        import numpy as np

        width, k = self.attrs.get("d_sae"), self.attrs.get("k")
        for key, value in (("d_sae", width), ("k", k)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ArtifactError(self.path / MANIFEST, f"attrs.{key} should be a positive integer, not {value!r}")
        path = self.path / name
        t = self.tensors(name, {key: (v, 2) for key, v in TOPK_DTYPES.items()})
        idx, val = t["indices"], t["values"]
        if idx.shape != val.shape:
            raise ArtifactError(path, f"indices {list(idx.shape)} and values {list(val.shape)} differ in shape")
        if k is not None and idx.shape[1] != k:
            raise ArtifactError(path, f"holds {idx.shape[1]} features per row, but the manifest's attrs.k is {k}",
                                hint="the shards and the manifest disagree: re-run the stage that wrote them")
        if idx.size:
            low, high = int(idx.min()), int(idx.max())
            if low < -1 or (width is not None and high >= width):
                bad = low if low < -1 else high
                raise ArtifactError(path, f"feature index {bad} out of range [-1, {width if width is not None else '∞'})"
                                          " (-1 marks an empty slot)")
            if not bool(np.isfinite(val).all()):
                raise ArtifactError(path, "holds a NaN or infinite activation value",
                                    hint="re-extract, or clean the values the shard was written from")
            if bool((val[idx < 0] != 0).any()):
                raise ArtifactError(path, "an empty slot (index -1) holds a nonzero value")
        return TopK(idx, val)


def _parse(path: Path, what: str, parse, data: bytes):
    """Run a third-party parser on bytes; any failure, even a Rust panic (which pyo3
    raises as a BaseException), becomes one ArtifactError line."""
    try:
        return parse(data)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        problem = str(e).splitlines()[0] if str(e) else ""
        raise ArtifactError(path, f"not a readable {what} ({type(e).__name__}: {problem})") from None


def _fail(path: Path, problem: str, hint: str | None = None):
    raise ArtifactError(path, problem, hint)


def open_artifact(path: str | Path, kind: str | tuple[str, ...] | None = None) -> Artifact:
    """Open the artifact at `path`, checking its manifest, kind, schema and files."""
    path = Path(path)
    mpath = path / MANIFEST
    if not path.is_dir():
        _fail(path, "no such artifact directory" if not path.exists() else "not a directory")
    if not mpath.is_file():
        _fail(path, f"no {MANIFEST}: not a codec artifact, or an unfinished one",
              "re-run the stage that writes it")
    try:
        m = json.loads(mpath.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        _fail(mpath, f"not valid JSON ({e})")
    _check_manifest(mpath, m)
    wanted = (kind,) if isinstance(kind, str) else kind
    if wanted and m["kind"] not in wanted:
        _fail(path, f"is a {m['kind']!r} artifact, expected {' or '.join(map(repr, wanted))}")
    newest = SCHEMA_VERSIONS.get(m["kind"], 1)
    if m["schema_version"] > newest:
        _fail(path, f"{m['kind']} schema {m['schema_version']} is newer than this codec reads ({newest})",
              "upgrade codec")
    root = path.resolve()
    for name, meta in m["files"].items():
        f = path / name
        if not f.is_file():
            _fail(f, "listed in the manifest but missing", "re-run the stage that writes it")
        if not f.resolve().is_relative_to(root):  # a link out of the artifact reads what it never hashed
            _fail(f, "is a link to a file outside the artifact", "copy the file in, or re-run the stage that writes it")
        if f.stat().st_size != meta["bytes"]:
            _fail(f, f"is {f.stat().st_size} bytes, the manifest says {meta['bytes']} (truncated or damaged)")
    try:
        expect = content_fingerprint(m["kind"], m["schema_version"], m["attrs"], m["files"])
    except ValueError:  # NaN or infinity: not strict JSON
        expect = None
    if m["fingerprint"] != expect:
        _fail(mpath, "fingerprint does not match its contents (edited by hand?)")
    return Artifact(path, m)


_MANIFEST_TYPES = {"kind": str, "schema_version": int, "codec_version": str, "command": str,
                   "params": dict, "inputs": list, "attrs": dict, "files": dict, "fingerprint": str}


def _check_manifest(mpath: Path, m: Any) -> None:
    if not isinstance(m, dict):
        _fail(mpath, "not a codec manifest (expected a JSON object)")
    for key, tp in _MANIFEST_TYPES.items():
        if key not in m:
            _fail(mpath, f"not a codec manifest (no {key!r})")
        if not isinstance(m[key], tp) or (tp is int and isinstance(m[key], bool)):
            _fail(mpath, f"manifest field {key!r} should be a {tp.__name__}")
    for name, meta in m["files"].items():
        if (not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str)
                or not isinstance(meta.get("bytes"), int) or meta["bytes"] < 0):
            _fail(mpath, f"manifest entry for {name!r} needs 'sha256' and 'bytes'")
        if name.startswith("/") or ".." in Path(name).parts or name == MANIFEST:
            _fail(mpath, f"manifest lists an unsafe file name {name!r}")


def check_lineage(artifacts: Iterable[Artifact]) -> None:
    """Refuse artifacts that do not belong together.

    If artifact A was made from an input of kind K, and an artifact of kind K is also
    given, it must be that very input (same fingerprint): a squeezer trained on one
    SAE's features cannot be analysed with another SAE's features.
    """
    arts = list(artifacts)
    by_kind = {a.kind: a for a in arts}
    for a in arts:
        for inp in a.inputs:
            other = by_kind.get(inp.get("kind"))
            if other is not None and other is not a and inp.get("fingerprint") != other.fingerprint:
                raise BadInput(f"{a.path} was made from a different {other.kind} artifact than {other.path}",
                               hint=f"pass the {other.kind} artifact it was made from ({inp.get('path')})")


# --------------------------------------------------------------------------- writing


MARK = ".codec-artifact"
"""A hidden file in every finished artifact, naming its kind, outside the manifest. When
`make`'s .DELETE_ON_ERROR removes a manifest.json (its target) it leaves the rest of the
directory; the mark tells a re-run that the directory is codec's own to replace."""


def check_output(out: Path, kind: str | None = None) -> None:
    """Refuse, before any work, an --out that holds something other than a codec
    artifact of this kind: a stage never replaces what it did not make."""
    out = Path(out)
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    hint = "choose another --out, or remove it yourself"
    if not out.is_dir():
        raise BadInput(f"{out}: exists and is not a codec artifact; refusing to replace it", hint=hint)
    found = None
    for name in (MANIFEST, MARK):  # the mark stands in for a manifest that make deleted
        try:
            found = json.loads((out / name).read_bytes()).get("kind")
            break
        except (OSError, ValueError, AttributeError):
            continue
    if found is None:
        raise BadInput(f"{out}: exists and is not a codec artifact; refusing to replace it", hint=hint)
    if kind is not None and found != kind:
        raise BadInput(f"{out}: holds a {found!r} artifact; refusing to replace it with a {kind!r} one", hint=hint)


def _claim(path: Path, resume: bool | None) -> int | None:
    """Make `path` (the partial directory) this run's own and hold an exclusive lock on
    it until the returned descriptor is closed; refuse it while another run holds it.

    A partial left by a dead run is reused when resuming and replaced otherwise. The lock
    is checked to be on the directory now at `path`, since another run may have just
    replaced a stale one."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): no protection against a second run
        fcntl = None
    for _ in range(20):
        try:
            path.mkdir()
            fresh = True
        except FileExistsError:
            fresh = False
        if not path.is_dir() or path.is_symlink():  # a stray file or link under our hidden name
            path.unlink(missing_ok=True)
            continue
        if fcntl is None:
            if not (fresh or resume):
                shutil.rmtree(path, ignore_errors=True)
                continue
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BadInput(f"{path.parent / path.name[1:].removesuffix('.partial')}: another codec run is writing "
                           "it now", hint="wait for that run to finish, or choose another --out") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same and (fresh or resume):
            return fd
        if same:  # left by a run that died: start afresh
            shutil.rmtree(path, ignore_errors=True)
        os.close(fd)
    raise CodecError(f"{path}: could not claim the partial directory", hint="remove it and try again")


def check_not_an_input(out: Path, inputs: Iterable[str | Path]) -> None:
    """Refuse an --out that is one of the run's own inputs: replacing it would destroy
    what the run reads."""
    out = Path(out).resolve()
    for p in inputs:
        if Path(p).resolve() == out:
            raise BadInput(f"{out}: --out names one of the inputs; refusing to replace it",
                           hint="choose another --out")


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ArtifactWriter:
    """Writes one artifact directory atomically. Use as a context manager:

        with ArtifactWriter(out, "features", command="codec extract", params=cfg) as w:
            w.write_topk(indices, values)
            w.attrs["d_sae"] = 24576

    On a clean exit the manifest is written last and the directory swapped into
    place; on an exception the partial directory is removed and `out` is untouched.
    While a writer is open it holds a lock on its partial directory, so a second run
    with the same `out` is refused rather than sharing it.

    A resumable stage passes `resume=False` (start afresh) or `resume=True` (carry on
    in the partial directory a killed or failed run left). After an exception its
    partial directory survives when it holds a file matching `resumable` (a glob, e.g.
    the checkpoint; any file when not given), with a note on stderr; otherwise it goes.
    `resume` itself is left out of the recorded params: a resumed run writes the same
    manifest as an uninterrupted one.
    """

    def __init__(self, out: str | Path, kind: str, *, command: str, params: dict | None = None,
                 inputs: Iterable[Artifact] = (), attrs: dict | None = None, resume: bool | None = None,
                 resumable: str | None = None):
        self.out = Path(out).resolve()  # `--out .` must still have a parent to swap in
        self.kind = kind
        self.command = command
        self.params = {k: v for k, v in (params or {}).items() if not (resume is not None and k == "resume")}
        inputs = list(inputs)
        self.inputs = [{"kind": a.kind, "path": str(a.path), "fingerprint": a.fingerprint} for a in inputs]
        self.attrs = dict(attrs or {})
        self.path = self.out.parent / f".{self.out.name}.partial"
        self.resume = resume
        self.resumable = resumable
        self._shards = 0
        self._lock: int | None = None
        check_output(self.out, kind)
        check_not_an_input(self.out, [a.path for a in inputs])

    def __enter__(self) -> ArtifactWriter:
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise BadInput(f"{self.out}: its parent {self.out.parent} is a file, not a directory",
                           hint="choose another --out") from None
        self._lock = _claim(self.path, self.resume)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None:
                self._abandon()
                return
            try:
                self._finish()
            except BaseException:
                shutil.rmtree(self.path, ignore_errors=True)
                raise
        finally:
            if self._lock is not None:
                os.close(self._lock)
                self._lock = None

    def _abandon(self) -> None:
        """After a failure: keep what a resume can use (and say so), remove the rest."""
        worth = self.resume is not None and self.path.is_dir() and (
            any(p.is_file() for p in self.path.rglob("*")) if self.resumable is None
            else any(self.path.glob(self.resumable)))
        if not worth:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for tmp in self.path.rglob(".*.tmp"):  # a file caught mid-write is never resumed
            tmp.unlink(missing_ok=True)
        from codec_cli.talk import info

        info(f"note: the unfinished run is kept in {self.path}; run the same command with --resume to carry "
             "on, or without it to start afresh")

    def _target(self, name: str) -> Path:
        p = self.path / name
        if name == MANIFEST or p.resolve().parent != p.parent.resolve() or ".." in Path(name).parts:
            raise ValueError(f"bad artifact file name {name!r}")
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_bytes(self, name: str, data: bytes) -> Path:
        """Write one file whole: through a hidden temporary and a rename, so that a kill
        never leaves a half-written file under its real name (resumed runs rely on it)."""
        p = self._target(name)
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, p)
        return p

    def write_json(self, name: str, obj: Any) -> Path:
        return self.write_bytes(name, canonical_json(obj))

    def write_tensors(self, name: str, tensors: dict[str, np.ndarray]) -> Path:
        import numpy as np
        from safetensors.numpy import save

        return self.write_bytes(name, save({k: np.ascontiguousarray(v) for k, v in tensors.items()}))

    def write_table(self, name: str, table) -> Path:
        """Write a polars DataFrame (or a dict of equal-length columns) as parquet."""
        import polars as pl

        df = table if isinstance(table, pl.DataFrame) else pl.DataFrame(table)
        buffer = io.BytesIO()
        df.write_parquet(buffer)
        return self.write_bytes(name, buffer.getvalue())

    def write_figure(self, name: str, fig) -> Path:
        """Write a matplotlib Figure as PNG, without the timestamp or version that would make
        two identical runs differ."""
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120, metadata={"Software": None})
        return self.write_bytes(name, buffer.getvalue())

    def write_topk(self, indices: np.ndarray, values: np.ndarray, prefix: str = "shards/") -> Path:
        """Append the next shard of sparse top-k activations (`shards/00000.safetensors`, …)."""
        import numpy as np

        indices = np.asarray(indices)
        values = np.asarray(values)
        if indices.shape != values.shape or indices.ndim != 2:
            raise ValueError(f"top-k indices {indices.shape} and values {values.shape} must be equal 2-D shapes")
        if values.dtype.name not in TOPK_DTYPES["values"]:
            values = values.astype(np.float32)
        name = f"{prefix}{self._shards:05d}.safetensors"
        self._shards += 1
        return self.write_tensors(name, {"indices": indices.astype(np.int32), "values": values})

    def _finish(self) -> None:
        (self.path / MANIFEST).unlink(missing_ok=True)  # a resumed run killed while swapping left one
        files = {}
        (self.path / MARK).unlink(missing_ok=True)
        for p in sorted(self.path.rglob("*")):
            if p.is_file():
                name = p.relative_to(self.path).as_posix()
                files[name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                _fsync(p)
        (self.path / MARK).write_bytes(canonical_json({"kind": self.kind}))
        schema = SCHEMA_VERSIONS.get(self.kind, 1)
        manifest = {
            "kind": self.kind,
            "schema_version": schema,
            "codec_version": __version__,
            "command": self.command,
            "params": self.params,
            "inputs": self.inputs,
            "attrs": self.attrs,
            "files": files,
            "fingerprint": content_fingerprint(self.kind, schema, self.attrs, files),
        }
        (self.path / MANIFEST).write_bytes(canonical_json(manifest))
        _fsync(self.path / MANIFEST)
        _fsync(self.path)
        if self.out.exists() and _exchange(self.path, self.out):
            shutil.rmtree(self.path)  # now holds the old artifact
        else:
            if self.out.exists():  # no atomic exchange here: a moment without `out`
                old = self.out.parent / f".{self.out.name}.old"
                shutil.rmtree(old, ignore_errors=True)
                os.rename(self.out, old)
                os.rename(self.path, self.out)
                shutil.rmtree(old)
            else:
                os.rename(self.path, self.out)
        _fsync(self.out.parent)
