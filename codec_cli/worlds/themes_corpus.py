"""The `themes` world: a generated corpus with planted structure, and its word-level tokenizer.

A document is BOS followed by simple sentences drawn from a dozen templates
("after monday comes tuesday .", "in paris we saw the comet ."), cut to exactly
`n_ctx` words. Three kinds of structure are planted, each with a ground-truth
table (`ground_truth`), so that a later analysis of a model trained on this text,
and of an SAE on its residual stream, can be checked against the answer:

- themes: each document has one latent topic (cooking, sailing, astronomy …); all
  its content words come from that topic's own vocabulary (disjoint from the
  others, Zipf-distributed within it). Expect context features per theme and
  clusters of SAE atoms that follow the topic vocabularies.
- cycles: weekdays and months appear in ordered contexts ("after X comes X+1",
  "the day before X is X-1", "two days after X comes X+2"), wrap-around included,
  so predicting the next word needs the cyclic order. The text alone does not put
  the days and months on circles (a small model learns the order as a lookup
  table); the themes model holds their embeddings on circles (themes.py,
  `cycle_radius`), the irreducible multi-dimensional features of Engels et al.
  2024, "Not All Language Model Features Are (One-Dimensionally) Linear".
- exclusive alternatives: each document picks one place (of 16) and one name
  (of 8) and repeats it, so two places or two names never co-occur in a document.
  Features that never co-occur are the cheap case for superposition in Elhage et
  al. 2022, "Toy Models of Superposition": expect them to share neurons (OR-gates).

The process is simple enough that the true next-word distribution given the
preceding words alone is exact (`next_token_distributions`): the topic, place
and name are revealed by their first occurrence (vocabularies are disjoint) and
uniform before it, and templates form a prefix tree whose branches are told
apart by word class. `corpus_entropy` (sampled prefixes) and `exact_corpus_entropy`
(all prefixes) are therefore the loss floor of a perfect model, in nats per
predicted token: 0.8712 for the default config.

Generation uses only the standard library; torch, tokenizers, transformers and
polars are imported inside the functions that need them.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Iterator, Sequence

import polars as pl
import torch

from codec_cli.errors import BadInput, BadParameter

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(len(SPECIALS))

THEMES: dict[str, tuple[str, ...]] = {
    "cooking": ("oven", "flour", "butter", "recipe", "soup", "pan", "garlic", "onion",
                "pepper", "dough", "sauce", "kettle", "spoon", "bread", "salt", "ladle"),
    "sailing": ("boat", "sail", "mast", "anchor", "harbor", "rope", "deck", "keel",
                "tide", "rudder", "hull", "wave", "buoy", "captain", "compass", "yacht"),
    "astronomy": ("star", "planet", "comet", "telescope", "orbit", "galaxy", "nebula", "moon",
                  "meteor", "asteroid", "eclipse", "crater", "quasar", "cosmos", "pulsar", "satellite"),
    "music": ("piano", "violin", "melody", "guitar", "drum", "chord", "rhythm", "song",
              "choir", "flute", "trumpet", "harmony", "tempo", "concert", "cello", "opera"),
    "medicine": ("doctor", "nurse", "fever", "vaccine", "clinic", "pill", "surgery", "virus",
                 "patient", "bandage", "syringe", "dose", "tablet", "symptom", "therapy", "hospital"),
    "football": ("goal", "ball", "striker", "referee", "stadium", "penalty", "keeper", "coach",
                 "pitch", "tackle", "match", "league", "corner", "whistle", "jersey", "offside"),
    "gardening": ("seed", "soil", "rose", "shovel", "compost", "tulip", "hedge", "weed",
                  "flower", "rake", "hose", "bulb", "orchard", "mulch", "fern", "sprout"),
    "finance": ("bank", "stock", "bond", "loan", "market", "profit", "budget", "credit",
                "interest", "dividend", "tax", "asset", "equity", "broker", "fund", "debt"),
}
CYCLES: dict[str, tuple[str, ...]] = {
    "weekday": ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
    "month": ("january", "february", "march", "april", "may", "june", "july", "august",
              "september", "october", "november", "december"),
}
EXCLUSIVE: dict[str, tuple[str, ...]] = {
    "place": ("paris", "london", "rome", "tokyo", "cairo", "lima", "oslo", "delhi",
              "sydney", "boston", "madrid", "berlin", "vienna", "dublin", "lisbon", "prague"),
    "name": ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"),
}
# Slots: {theme} a word of the document's topic, {place}/{name} the document's one
# place/name, {day}/{month} a uniform cycle member, {day+k} the k-th successor of
# the {day} before it in the same sentence. Templates that start alike part ways at
# words of different classes, so the words seen so far always tell which templates
# are still possible (checked by `_check_prefix_tree`).
TEMPLATES = (
    "we talk about the {theme} and the {theme} .",
    "the {theme} is near the {theme} .",
    "she gave the {theme} to {name} .",
    "in {place} we saw the {theme} .",
    "in {month} the {theme} was ready .",
    "my friend {name} lives in {place} .",
    "on {day} {name} went to {place} .",
    "after {day} comes {day+1} .",
    "after {month} comes {month+1} .",
    "the day before {day} is {day-1} .",
    "the month before {month} is {month-1} .",
    "two days after {day} comes {day+2} .",
)
_SLOT_CYCLE = {"day": "weekday", "month": "month"}


@dataclass(frozen=True)
class ThemesCorpusConfig:
    """The generated corpus of the `themes` world."""

    n_ctx: int = 64
    """Context length in words, BOS included; every document is cut to exactly this length."""
    n_themes: int = 8
    """Number of topics: the first N of cooking, sailing, astronomy, music, medicine, football,
    gardening, finance."""
    words_per_theme: int = 16
    """Content words per topic (at most 16)."""
    n_places: int = 16
    """Places to choose from; each document uses exactly one (at most 16)."""
    n_names: int = 8
    """Names to choose from; each document uses exactly one (at most 8)."""
    zipf_exponent: float = 1.0
    """Within a topic, the word of rank r is drawn with weight 1/r**zipf_exponent; 0 is uniform."""

    def __post_init__(self):
        limits = {"n_ctx": 4096, "n_themes": len(THEMES), "words_per_theme": 16,
                  "n_places": len(EXCLUSIVE["place"]), "n_names": len(EXCLUSIVE["name"])}
        for name, most in limits.items():
            value = getattr(self, name)
            least = 2 if name == "n_ctx" else 1
            if not isinstance(value, int) or not least <= value <= most:
                flag = "--" + name.replace("_", "-")
                raise BadInput(f"{flag} must be an integer from {least} to {most}, got {value!r}")
        if not (isinstance(self.zipf_exponent, (int, float)) and 0 <= self.zipf_exponent < math.inf):
            raise BadInput(f"--zipf-exponent must be a finite number >= 0, got {self.zipf_exponent!r}")


@dataclass(frozen=True)
class Document:
    """One generated document and the latent choices behind it."""

    tokens: tuple[int, ...]
    """Token ids, BOS first, exactly n_ctx long."""
    theme: str
    """The document's topic (whether or not a content word made it into the cut)."""
    place: str
    """The one place the document may mention."""
    name: str
    """The one name the document may mention."""


@dataclass
class _World:
    """A config resolved into ids: what both the sampler and the exact predictive read."""

    vocab: list[str]
    themes: list[str]
    templates: list[list[tuple]]
    period: int
    members: dict[str, list[int]]
    """Token ids of each cycle (in cyclic order) and of each exclusive group."""
    role: dict[int, tuple[str, int]]
    """token -> ("theme", topic) | ("weekday"/"month", position) | ("place"/"name", index)."""
    theme_ids: list[list[int]]
    theme_cum: list[float]
    """Cumulative Zipf weights by rank, the same for every topic."""
    theme_dist: list[dict[int, float]]
    any_theme_dist: dict[int, float]
    """p(word) at a topic slot before any topic word was seen: the mixture over topics."""


def _parse(template: str) -> list[tuple]:
    """Elements: ("word", w) | ("theme",) | ("place",) | ("name",) | ("cycle", c)
    | ("step", c, offset, position of the ("cycle", c) slot it counts from)."""
    out: list[tuple] = []
    for part in template.split():
        slot = re.fullmatch(r"\{(\w+?)([+-]\d+)?\}", part)
        if slot is None:
            out.append(("word", part))
        elif slot[1] not in _SLOT_CYCLE:
            out.append((slot[1],))
        elif slot[2] is None:
            out.append(("cycle", _SLOT_CYCLE[slot[1]]))
        else:
            anchor = max(i for i, e in enumerate(out) if e == ("cycle", _SLOT_CYCLE[slot[1]]))
            out.append(("step", _SLOT_CYCLE[slot[1]], int(slot[2]), anchor))
    return out


@cache
def _world(cfg: ThemesCorpusConfig) -> _World:
    parsed = [_parse(t) for t in TEMPLATES]
    function_words = list(dict.fromkeys(e[1] for t in parsed for e in t if e[0] == "word"))
    themes = list(THEMES)[: cfg.n_themes]
    words = {**CYCLES, "place": EXCLUSIVE["place"][: cfg.n_places], "name": EXCLUSIVE["name"][: cfg.n_names]}
    content = [THEMES[t][: cfg.words_per_theme] for t in themes]
    vocab = [*SPECIALS, *function_words, *(w for ws in words.values() for w in ws),
             *(w for c in content for w in c)]
    if len(set(vocab)) != len(vocab):
        raise AssertionError("the word lists of the themes world overlap")
    ids = {w: i for i, w in enumerate(vocab)}

    members = {k: [ids[w] for w in ws] for k, ws in words.items()}
    theme_ids = [[ids[w] for w in c] for c in content]
    role = {i: (k, pos) for k, m in members.items() for pos, i in enumerate(m)}
    role |= {i: ("theme", k) for k, t in enumerate(theme_ids) for i in t}
    weights = [1 / (r + 1) ** cfg.zipf_exponent for r in range(cfg.words_per_theme)]
    probs = [x / sum(weights) for x in weights]
    theme_dist = [dict(zip(t, probs)) for t in theme_ids]
    templates = [[("word", ids[e[1]]) if e[0] == "word" else e for e in t] for t in parsed]
    world = _World(
        vocab=vocab, themes=themes, templates=templates, period=ids["."], members=members, role=role,
        theme_ids=theme_ids,
        theme_cum=[sum(probs[: r + 1]) for r in range(len(probs))], theme_dist=theme_dist,
        any_theme_dist={i: p / len(themes) for d in theme_dist for i, p in d.items()})
    _check_prefix_tree(world)
    return world


def _check_prefix_tree(world: _World) -> None:
    """The exact predictive weighs the templates still possible by their prior alone,
    and starts a new sentence after '.'; that is right only if templates agree up to a
    word where their word classes differ, and '.' comes last and only last."""
    for t in world.templates:
        if [e == ("word", world.period) for e in t] != [False] * (len(t) - 1) + [True]:
            raise AssertionError(f"template {t} must end with '.' and hold no other")
    for a in world.templates:
        for b in world.templates:
            split = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y) if a != b else None
            if split is not None and _word_class(a[split]) == _word_class(b[split]):
                raise AssertionError(f"templates {a} and {b} cannot be told apart at word {split}")


def _word_class(element: tuple) -> int | str:
    """The class of words an element can produce: one fixed word (its id), or one of
    "theme", "weekday", "month", "place", "name", which partition the other words."""
    return element[1] if element[0] in ("word", "cycle", "step") else element[0]


def cycle_members(cfg: ThemesCorpusConfig = ThemesCorpusConfig()) -> dict[str, list[int]]:
    """Token ids of each cycle (weekday, month), in cyclic order."""
    members = _world(cfg).members
    return {name: members[name] for name in CYCLES}


def vocabulary(cfg: ThemesCorpusConfig = ThemesCorpusConfig()) -> list[str]:
    """The words of the corpus; a word's position is its token id (specials first)."""
    return list(_world(cfg).vocab)


def documents(cfg: ThemesCorpusConfig = ThemesCorpusConfig(), n_docs: int | None = None,
              seed: int = 0) -> Iterator[Document]:
    """`n_docs` documents (endless if None); the same seed gives the same documents."""
    world, rng = _world(cfg), random.Random(seed)
    made = 0
    while n_docs is None or made < n_docs:
        theme, place, name = (rng.randrange(len(world.themes)), rng.randrange(cfg.n_places),
                              rng.randrange(cfg.n_names))
        chosen = {"place": world.members["place"][place], "name": world.members["name"][name]}
        tokens = [BOS]
        while len(tokens) < cfg.n_ctx:
            sentence: list[int] = []
            for element in world.templates[rng.randrange(len(world.templates))]:
                kind = element[0]
                if kind == "word":
                    sentence.append(element[1])
                elif kind == "theme":
                    sentence.append(rng.choices(world.theme_ids[theme], cum_weights=world.theme_cum)[0])
                elif kind == "cycle":
                    sentence.append(rng.choice(world.members[element[1]]))
                elif kind == "step":
                    ring = world.members[element[1]]
                    sentence.append(ring[(world.role[sentence[element[3]]][1] + element[2]) % len(ring)])
                else:
                    sentence.append(chosen[kind])
            tokens += sentence
        # Cutting a left-to-right process leaves every kept word's conditional unchanged,
        # so documents fill the context exactly, with no padding and no loss mask.
        yield Document(tuple(tokens[: cfg.n_ctx]), world.themes[theme],
                       EXCLUSIVE["place"][place], EXCLUSIVE["name"][name])
        made += 1


class _Predictive:
    """The true distribution of the next word given the words after BOS: the topic,
    place and name are unknown (uniform) until their first word reveals them, for
    the word lists are disjoint and nothing else depends on them."""

    def __init__(self, world: _World):
        self.world = world
        self.known: dict[str, int | None] = {"theme": None, "place": None, "name": None}
        self.sentence: list[int] = []
        self.candidates = list(range(len(world.templates)))

    def copy(self) -> _Predictive:
        twin = _Predictive(self.world)
        twin.known = dict(self.known)
        twin.sentence, twin.candidates = list(self.sentence), list(self.candidates)
        return twin

    def key(self) -> tuple:
        """All the entropy of what follows depends on: not which words were seen, only
        the templates still possible, the place in the sentence and what is known."""
        return tuple(self.candidates), len(self.sentence), tuple(v is None for v in self.known.values())

    def distribution(self) -> dict[int, float]:
        out: dict[int, float] = {}
        # Templates still possible share the same words so far, and so the same
        # likelihood: the posterior over them is their (uniform) prior, renormalised.
        share = 1 / len(self.candidates) if self.candidates else 0.0
        for t in self.candidates:
            for token, p in self._element(self.world.templates[t][len(self.sentence)]).items():
                out[token] = out.get(token, 0.0) + share * p
        return out

    def _element(self, element: tuple) -> dict[int, float]:
        kind, world = element[0], self.world
        if kind == "word":
            return {element[1]: 1.0}
        if kind == "theme":
            known = self.known["theme"]
            return world.any_theme_dist if known is None else world.theme_dist[known]
        if kind == "cycle":
            ring = world.members[element[1]]
            return {i: 1 / len(ring) for i in ring}
        if kind == "step":
            ring = world.members[element[1]]
            return {ring[(world.role[self.sentence[element[3]]][1] + element[2]) % len(ring)]: 1.0}
        known, group = self.known[kind], world.members[kind]
        return {i: 1 / len(group) for i in group} if known is None else {group[known]: 1.0}

    def observe(self, token: int) -> None:
        world, i = self.world, len(self.sentence)
        kind, index = world.role.get(token, (token, 0))
        self.candidates = [t for t in self.candidates if _word_class(world.templates[t][i]) == kind]
        if kind in self.known:
            self.known[kind] = index
        self.sentence.append(token)
        if token == world.period:
            self.sentence, self.candidates = [], list(range(len(world.templates)))


def next_token_distributions(cfg: ThemesCorpusConfig, tokens: Sequence[int]) -> list[dict[int, float]]:
    """The true next-token distribution after each position, aligned with a model's
    logits: entry t is p(x_{t+1} | x_0..x_t), given the words only. tokens[0] must be BOS."""
    if not tokens or tokens[0] != BOS:
        raise BadInput("a document must start with the BOS token (id 1)")
    predictive = _Predictive(_world(cfg))
    out = [predictive.distribution()]
    for token in tokens[1:]:
        predictive.observe(token)
        out.append(predictive.distribution())
    return out


def token_logprobs(cfg: ThemesCorpusConfig, tokens: Sequence[int]) -> list[float]:
    """log p(x_t | x_<t) for t = 1 .. len(tokens)-1 (-inf for an impossible token)."""
    dists = next_token_distributions(cfg, tokens)
    return [math.log(d[x]) if d.get(x, 0.0) > 0 else -math.inf for d, x in zip(dists, tokens[1:])]


def corpus_entropy(cfg: ThemesCorpusConfig = ThemesCorpusConfig(), n_docs: int = 2000, seed: int = 0) -> float:
    """The loss floor of a perfect model, in nats per predicted token.

    H = E[-log p(x_t | x_<t)] over documents of the process and positions t = 1 .. n_ctx-1
    (every position a causal LM's loss scores; the BOS at t = 0 is given), where p is the
    posterior predictive given the preceding words only: the topic, place and name are
    inferred from the text, never handed over. Per position the expectation over x_t is
    taken exactly (the entropy of the true next-word distribution); only the prefixes
    x_<t are sampled, from `n_docs` documents of `seed`; `exact_corpus_entropy` sums
    over them instead.
    """
    total, count = 0.0, 0
    for doc in documents(cfg, n_docs, seed):
        for dist in next_token_distributions(cfg, doc.tokens)[:-1]:
            total += _entropy(dist)
            count += 1
    return total / count


def exact_corpus_entropy(cfg: ThemesCorpusConfig = ThemesCorpusConfig()) -> float:
    """`corpus_entropy` with the prefixes summed over instead of sampled: exact.

    Prefixes that agree on `_Predictive.key` are merged (a few hundred states), and
    each state moves on by word class, one representative word standing for its class.
    """
    world = _world(cfg)
    start = _Predictive(world)
    states, total = {start.key(): (1.0, start)}, 0.0
    for _ in range(cfg.n_ctx - 1):
        following: dict[tuple, tuple[float, _Predictive]] = {}
        for weight, state in states.values():
            dist = state.distribution()
            total += weight * _entropy(dist)
            classes: dict[int | str, tuple[float, int]] = {}
            for token, p in dist.items():
                word_class = world.role.get(token, (token, 0))[0]
                classes[word_class] = (classes.get(word_class, (0.0, token))[0] + p, token)
            for mass, token in classes.values():
                child = state.copy()
                child.observe(token)
                seen, kept = following.get(child.key(), (0.0, child))
                following[child.key()] = (seen + weight * mass, kept)
        states = following
    return total / (cfg.n_ctx - 1)


def _entropy(dist: dict[int, float]) -> float:
    return -sum(p * math.log(p) for p in dist.values() if p > 0)


def token_table(cfg: ThemesCorpusConfig = ThemesCorpusConfig()) -> list[dict]:
    """Ground truth, one row per vocabulary token: its theme, its cycle and position
    in it, its exclusive group and index in it (None where not applicable)."""
    world, rows = _world(cfg), []
    for token_id, token in enumerate(world.vocab):
        kind, index = world.role.get(token_id, (None, None))
        rows.append({"token_id": token_id, "token": token,
                     "theme": world.themes[index] if kind == "theme" else None,
                     "cycle": kind if kind in CYCLES else None,
                     "cycle_position": index if kind in CYCLES else None,
                     "exclusive_group": kind if kind in EXCLUSIVE else None,
                     "exclusive_index": index if kind in EXCLUSIVE else None})
    return rows


def ground_truth(cfg: ThemesCorpusConfig = ThemesCorpusConfig()):
    """`token_table` as a polars DataFrame (nulls where not applicable)."""
    schema = {"token_id": pl.Int64, "token": pl.String, "theme": pl.String, "cycle": pl.String,
              "cycle_position": pl.Int64, "exclusive_group": pl.String, "exclusive_index": pl.Int64}
    return pl.DataFrame(token_table(cfg), schema=schema)


def to_text(cfg: ThemesCorpusConfig, tokens: Sequence[int]) -> str:
    """The words of a document, BOS left out, so that a tokenizer that prepends BOS
    (as `model.to_tokens` does) gives back the same ids."""
    vocab = _world(cfg).vocab
    return " ".join(vocab[t] for t in tokens if t != BOS)


def token_batches(cfg: ThemesCorpusConfig = ThemesCorpusConfig(), batch_size: int = 32, seed: int = 0,
                  n_batches: int | None = None):
    """Int64 tensors [batch_size, n_ctx], one document per row, BOS in column 0;
    endless if n_batches is None. Train on every position: there is no padding."""
    if batch_size < 1:
        raise BadParameter("batch_size", f"must be at least 1, got {batch_size}")
    docs = documents(cfg, None if n_batches is None else n_batches * batch_size, seed)
    made = 0
    while n_batches is None or made < n_batches:
        yield torch.tensor([next(docs).tokens for _ in range(batch_size)], dtype=torch.long)
        made += 1


def build_tokenizer(cfg: ThemesCorpusConfig = ThemesCorpusConfig()):
    """A word-level `PreTrainedTokenizerFast` whose ids are `vocabulary(cfg)`'s positions."""
    # transformers takes a second or more to import; the corpus and its truth table need none of it.
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocabulary(cfg))}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # add_bos_token=True, recorded in init_kwargs, is what makes transformer-lens keep
    # this tokenizer as it is instead of reloading it by name (get_tokenizer_with_bos),
    # and a name is needed there all the same; the word-level decoder joins with spaces.
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", add_bos_token=True, name_or_path="codec-themes",
        model_max_length=cfg.n_ctx, padding_side="right")


def save_tokenizer(tokenizer, directory: str | Path) -> None:
    """Write the tokenizer as JSON files (tokenizer.json, tokenizer_config.json)."""
    tokenizer.save_pretrained(str(directory))


def load_tokenizer(directory: str | Path):
    """Read a tokenizer written by `save_tokenizer`, offline."""
    from transformers import PreTrainedTokenizerFast

    if not (Path(directory) / "tokenizer.json").is_file():
        raise BadInput(f"{directory}: no tokenizer.json here", hint="write one with save_tokenizer")
    # add_bos_token is not kept in tokenizer_config.json by transformers 5; without it
    # transformer-lens would reload the tokenizer from this directory behind our back.
    return PreTrainedTokenizerFast.from_pretrained(str(directory), add_bos_token=True, local_files_only=True)
