"""A theme of `codec cluster`, opened with the model and the SAE it came from: what `codec steer`
and `codec monitor` act on.

    themes/  --inputs-->  features/  --attrs.sae-->  the SAE (its weights' hash checked)
    MODEL                 the model whose hook the SAE reads

A theme is named by its number or by a word of its label or top tokens; its atoms come
strongest first (activation mass: how often × how strongly each fires, from the features'
statistics), and its targets are its top tokens' ids, the words whose probability steering
should move.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from codec_cli.artifacts import check_lineage, open_artifact
from codec_cli.errors import BadInput
from codec_cli.sources import models
from codec_cli.sources.corpora import TEXT_SUFFIXES, corpus_files, read_documents
from codec_cli.talk import info


@dataclass
class Theme:
    number: int
    label: str
    atoms: np.ndarray
    """[N] the theme's atoms, strongest (largest activation mass) first."""
    mean: np.ndarray
    """[N] each atom's mean activation where it fires."""
    targets: np.ndarray
    """Token ids of the theme's top tokens: the target of steering."""
    words: list[str]
    """Those tokens' text."""

    @property
    def size(self) -> int:
        return len(self.atoms)


@dataclass
class Setting:
    """A themes artifact with everything it leads to, opened once."""

    model: Any
    """The transformer-lens model (eval mode, on its device)."""
    sae: Any
    """The sae-lens SAE the themes' atoms are latents of."""
    hook: str
    """The hook the SAE reads, where steering and monitoring act."""
    world: Any
    """The model's world (codec_cli.worlds.World) when MODEL is one, else None."""
    themes: Any
    features: Any
    table: pl.DataFrame
    """themes.parquet."""
    labels: np.ndarray
    """[F] each atom's theme (-1: noise)."""
    mean: np.ndarray
    """[F] each atom's mean activation where it fires (features.parquet)."""
    count: np.ndarray
    """[F] how often each atom fires among the extracted tokens."""

    def theme(self, name: str) -> Theme:
        """The theme called `name`: its number, or a word of its label or top tokens."""
        t = self._number(str(name).strip())
        row = self.table.filter(pl.col("theme") == t).row(0, named=True)
        atoms = np.flatnonzero(self.labels == t)
        mass = self.count[atoms] * self.mean[atoms]
        atoms = atoms[np.lexsort((atoms, -mass))]
        ids = np.asarray(row["top_token_ids"] or [], dtype=np.int64)
        if not len(ids):
            raise BadInput(f"{self.themes.path}: theme {t} has no top tokens to steer towards",
                           hint="cluster features whose token tables name tokens (codec extract on a language model)")
        return Theme(t, row["label"], atoms, self.mean[atoms], ids, list(row["top_tokens"]))

    def _number(self, name: str) -> int:
        numbers = self.table["theme"].to_list()
        if name.lstrip("-").isdigit():
            if int(name) not in numbers:
                raise BadInput(f"{self.themes.path} has no theme {name}",
                               hint=f"its themes are 0 to {len(numbers) - 1}" if numbers else
                               "it found none: cluster again (docs/cluster.md: --min-cluster-size, --method)")
            return int(name)
        word = name.lower()
        by_label = [t for t, lab in zip(numbers, self.table["label"]) if word in (w.strip().lower()
                                                                               for w in lab.split("/"))]
        by_token = [t for t, toks in zip(numbers, self.table["top_tokens"]) if word in (w.strip().lower()
                                                                                      for w in toks)]
        found = by_label or by_token
        if len(found) == 1:
            return found[0]
        listed = "; ".join(f"{t}: {lab}" for t, lab in zip(numbers, self.table["label"])
                           if not found or t in found)
        if not found:
            raise BadInput(f"no theme of {self.themes.path} is called {name!r}",
                           hint=f"give a number or a word of a label ({listed[:300]})")
        raise BadInput(f"{name!r} names {len(found)} themes of {self.themes.path}",
                       hint=f"give the number ({listed[:300]})")

    def outside(self, theme: Theme) -> np.ndarray:
        """Atoms that fire and are not the theme's: where random groups are drawn (a true null)."""
        return np.setdiff1d(np.flatnonzero(self.count > 0), theme.atoms)

    def decoder(self) -> torch.Tensor:
        """[F, d] the SAE's decoder directions."""
        return self.sae.W_dec.detach()

    def check_width(self, acts: torch.Tensor) -> None:
        """Refuse activations of another width than the SAE reads (a model it was not trained on)."""
        if acts.shape[-1] != self.sae.cfg.d_in:
            raise BadInput(f"the SAE reads {self.sae.cfg.d_in} dimensions at {self.hook}; this model has "
                           f"{acts.shape[-1]} there", hint="give the model the SAE was trained on")

    def encode(self, acts: torch.Tensor) -> torch.Tensor:
        self.check_width(acts)
        with torch.no_grad():
            return self.sae.encode(acts.to(self.sae.W_dec.dtype))


def open_setting(model: str, themes: Path, sae: str | None = None, sae_id: str | None = None,
                 device: str = "cpu") -> Setting:
    """Open a themes artifact, its features, their SAE (refused unless it is the one they were
    extracted with) and `model`, checked to have the SAE's hook."""
    art = open_artifact(themes, "themes")
    made_from = [i for i in art.inputs if i.get("kind") == "features"]
    path = Path(made_from[0]["path"]) if made_from else None
    if path is None or not (path / "manifest.json").is_file():
        raise BadInput(f"{art.path}: the features it was clustered from are not where it recorded them ({path})",
                       hint="put them back, or re-run codec cluster on them")
    features = open_artifact(path, "features")
    check_lineage([art, features])
    table = art.table("themes.parquet")
    if "top_token_ids" not in table.columns:
        raise BadInput(f"{art.path}: made by an older codec cluster, without its themes' token ids",
                       hint=f"re-run codec cluster {features.path}")
    handle, _ = models.reopen_sae(features, sae, sae_id, device)
    params = features.manifest["params"]
    source = params.get("extract", params).get("source")
    if source is not None and str(source) != str(model):
        info(f"note: the features were extracted from {source}; acting on {model}")
    # transformer-lens prints as it loads; stdout is for data, so its lines become messages.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        net, world = models.open_model(model)
        net = (net if models.check_device(device) == "cpu" else net.to(device)).eval()  # loaders give CPU models
    for line in printed.getvalue().splitlines():
        info(line)
    hook = handle.sae.cfg.metadata.hook_name or features.attrs.get("hook")
    if hook not in net.hook_dict:
        hooks = sorted(net.hook_dict)
        raise BadInput(f"the model {model!r} has no hook {hook!r}, which the SAE {handle.origin} reads",
                       hint=f"give the model the SAE was trained on (its hooks include {', '.join(hooks[:4])} …)")
    F = int(features.attrs["d_sae"])
    atoms = art.table("atoms.parquet", ["atom", "theme"])
    labels = np.full(F, -1, dtype=np.int64)
    labels[atoms["atom"].to_numpy()] = atoms["theme"].to_numpy()
    stats = features.table("features.parquet", ["feature", "count", "mean"])
    mean, count = np.zeros(F), np.zeros(F)
    mean[stats["feature"].to_numpy()] = stats["mean"].to_numpy()
    count[stats["feature"].to_numpy()] = stats["count"].to_numpy()
    return Setting(net, handle.sae, hook, world, art, features, table, labels, mean, count)


# --------------------------------------------------------------------------- texts


def read_texts(paths: list[Path], column: str, n: int) -> list[str]:
    """The first n texts of the files: a line of a .txt file is a text (blank lines skipped);
    a row of .jsonl or .parquet (its `column`) is one."""
    out: list[str] = []
    for path in corpus_files(list(paths)):
        if path.suffix.lower() in TEXT_SUFFIXES:
            texts = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
        else:
            texts = (t.strip() for t in read_documents([path], column))
        out += [t for t in texts if t]
        if len(out) >= n:
            break
    if not out:
        raise BadInput(f"no text in {', '.join(map(str, paths))}", hint="one text per line (.txt), or --column")
    return out[:n]


def tokenize(model, texts: list[str], where: str) -> list[torch.Tensor]:
    """Each text as token ids with BOS first, cut to the model's context."""
    out = []
    for t in texts:
        ids = model.to_tokens(t, prepend_bos=True, truncate=True)[0].cpu()
        out.append(ids)
    if all(len(ids) < 2 for ids in out):
        raise BadInput(f"the {where} make no tokens", hint="check the files and --column")
    return out


def batches(texts: list[torch.Tensor], batch_size: int):
    """Indices of the texts in batches of one length each (no padding, so no mask to get wrong)."""
    by_len: dict[int, list[int]] = {}
    for i, t in enumerate(texts):
        by_len.setdefault(len(t), []).append(i)
    for n in sorted(by_len):
        idx = by_len[n]
        for lo in range(0, len(idx), batch_size):
            yield idx[lo:lo + batch_size]


def world_texts(setting: Setting, n: int, what: str, flag: str) -> tuple[list[torch.Tensor], list[str]]:
    """n of the world's own held-out documents and their planted topics, or a clear refusal."""
    module = None
    if setting.world is not None:
        module, cfg = setting.world.config()
    if module is None or not hasattr(module, "texts"):
        raise BadInput(f"give {flag}: {what}", hint="only a world that plants its topics (themes) brings its own texts")
    tokens, topics = module.texts(cfg, n)
    return list(tokens), topics


def planted_topic(setting: Setting, theme: Theme) -> str | None:
    """The world's topic that most of the theme's target tokens belong to (its truth table), or
    None where no topic holds at least half of them."""
    truth = setting.world.path / "truth" / "tokens.parquet" if setting.world is not None else None
    if truth is None or not truth.is_file():
        return None
    t = pl.read_parquet(truth, columns=["token_id", "theme"])
    topic_of = dict(zip(t["token_id"].to_list(), t["theme"].to_list()))
    topics = [topic_of.get(int(i)) for i in theme.targets]
    best = max(set(topics) - {None}, key=lambda x: (topics.count(x), x), default=None)
    return best if best is not None and topics.count(best) * 2 >= len(topics) else None
