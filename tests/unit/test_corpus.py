"""The themes corpus: planted structure, ground truth, exact entropy, and the tokenizer."""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from itertools import product

import pytest

from codec_cli import config
from codec_cli.worlds.themes_corpus import (BOS, CYCLES, EXCLUSIVE, TEMPLATES, THEMES, ThemesCorpusConfig, build_tokenizer,
                              corpus_entropy, documents, exact_corpus_entropy, ground_truth, load_tokenizer,
                              next_token_distributions, save_tokenizer, to_text, token_batches, token_logprobs,
                              token_table, vocabulary)
from codec_cli.errors import BadInput

CFG = ThemesCorpusConfig()
DOCS = list(documents(CFG, 400, seed=0))
TABLE = {row["token"]: row for row in token_table(CFG)}


def words(doc) -> list[str]:
    return to_text(CFG, doc.tokens).split()


def test_every_config_field_has_a_docstring():
    import dataclasses

    assert set(config.field_docs(ThemesCorpusConfig)) == {f.name for f in dataclasses.fields(ThemesCorpusConfig)}


@pytest.mark.parametrize("bad", [dict(n_ctx=1), dict(n_themes=0), dict(n_themes=9), dict(words_per_theme=17),
                                 dict(n_places=0), dict(n_names=9), dict(zipf_exponent=-1.0),
                                 dict(zipf_exponent=math.inf), dict(n_ctx=64.0)])
def test_bad_config_is_one_clear_line(bad):
    with pytest.raises(BadInput) as e:
        ThemesCorpusConfig(**bad)
    assert "\n" not in str(e.value) and next(iter(bad)).replace("_", "-") in str(e.value)


def test_at_least_eight_themes_with_twelve_distinct_words_and_disjoint_vocabularies():
    assert CFG.n_themes >= 8 and CFG.words_per_theme >= 12
    content = [w for ws in THEMES.values() for w in ws]
    assert len(content) == len(set(content))
    others = {*(w for ws in CYCLES.values() for w in ws), *(w for ws in EXCLUSIVE.values() for w in ws)}
    assert not others & set(content)
    themes = Counter(row["theme"] for row in TABLE.values() if row["theme"])
    assert len(themes) >= 8 and min(themes.values()) >= 12


def test_a_document_keeps_to_its_one_theme():
    seen = Counter()
    for doc in DOCS:
        themes = {TABLE[w]["theme"] for w in words(doc)} - {None}
        assert themes <= {doc.theme}
        seen[doc.theme] += bool(themes)
    assert len(seen) == CFG.n_themes and min(seen.values()) > 10


def test_cycles_appear_in_order_with_wrap_around():
    pattern = re.compile(r"(two days after|after|the day before|the month before) (\w+) (?:comes|is) (\w+) \.")
    offsets = {"two days after": 2, "after": 1, "the day before": -1, "the month before": -1}
    wraps, checked = set(), 0
    for doc in DOCS:
        for phrase, a, b in pattern.findall(to_text(CFG, doc.tokens)):
            ra, rb = TABLE[a], TABLE[b]
            assert ra["cycle"] == rb["cycle"] is not None
            n = len(CYCLES[ra["cycle"]])
            assert (rb["cycle_position"] - ra["cycle_position"]) % n == offsets[phrase] % n
            if rb["cycle_position"] < ra["cycle_position"] and offsets[phrase] > 0:
                wraps.add((a, b))
            checked += 1
    assert checked > 1000
    assert {("sunday", "monday"), ("december", "january"), ("saturday", "monday")} <= wraps


def test_ground_truth_table_matches_vocabulary_and_cycles():
    df = ground_truth(CFG)
    assert df.columns == ["token_id", "token", "theme", "cycle", "cycle_position", "exclusive_group",
                          "exclusive_index"]
    assert df["token"].to_list() == vocabulary(CFG) and df["token_id"].to_list() == list(range(len(df)))
    for cycle, members in CYCLES.items():
        rows = df.filter(df["cycle"] == cycle).sort("cycle_position")
        assert rows["token"].to_list() == list(members)
        assert rows["cycle_position"].to_list() == list(range(len(members)))
    for group, members in EXCLUSIVE.items():
        rows = df.filter(df["exclusive_group"] == group).sort("exclusive_index")
        assert rows["token"].to_list() == list(members)
    the = df.row(vocabulary(CFG).index("the"), named=True)
    assert the["theme"] is the["cycle"] is the["cycle_position"] is the["exclusive_group"] is None
    assert ground_truth(ThemesCorpusConfig(n_places=3, n_themes=2)).height < df.height


def test_exclusive_groups_one_member_per_document_never_two():
    for group in EXCLUSIVE:
        used = Counter()
        for doc in DOCS:
            members = {w for w in words(doc) if TABLE[w]["exclusive_group"] == group}
            assert members <= {getattr(doc, group)}
            used.update(members)
        assert set(used) == set(EXCLUSIVE[group])  # all members in use, one at a time
    assert sum(any(TABLE[w]["exclusive_group"] == "place" for w in words(d)) for d in DOCS) > 0.9 * len(DOCS)


def test_documents_fill_the_context_and_are_deterministic_by_seed():
    assert all(len(d.tokens) == CFG.n_ctx and d.tokens[0] == BOS and BOS not in d.tokens[1:] for d in DOCS)
    assert list(documents(CFG, 50, seed=0)) == DOCS[:50]
    assert list(documents(CFG, 50, seed=1)) != DOCS[:50]
    batches = list(token_batches(CFG, batch_size=4, seed=3, n_batches=2))
    assert [tuple(b.shape) for b in batches] == [(4, CFG.n_ctx)] * 2 and (batches[0][:, 0] == BOS).all()
    again = next(token_batches(CFG, batch_size=4, seed=3))
    assert again.tolist() == batches[0].tolist() == [list(d.tokens) for d in documents(CFG, 4, seed=3)]


def test_true_distributions_are_normalised_and_give_the_text_positive_mass():
    for doc in DOCS[:50]:
        dists = next_token_distributions(CFG, doc.tokens)
        assert len(dists) == len(doc.tokens)
        assert all(abs(sum(d.values()) - 1) < 1e-9 for d in dists)
        assert all(d.get(x, 0) > 0 for d, x in zip(dists, doc.tokens[1:]))
    with pytest.raises(BadInput):
        next_token_distributions(CFG, DOCS[0].tokens[1:])


def test_entropy_is_sane_and_matches_the_average_log_loss():
    h = corpus_entropy(CFG, n_docs=400, seed=0)
    assert 0 < h < math.log(len(vocabulary(CFG))) and math.isfinite(h)
    # The entropy takes the expectation over x_t exactly; the mean -log p(x_t) over the
    # same documents estimates it by sampling. They agree only if the sampler draws
    # from the distribution the predictive describes (a mismatch adds a KL > 0).
    diffs = []
    for doc in DOCS:
        dists = next_token_distributions(CFG, doc.tokens)[:-1]
        ent = sum(-sum(p * math.log(p) for p in d.values()) for d in dists)
        diffs.append((-sum(token_logprobs(CFG, doc.tokens)) - ent) / len(dists))
    mean = sum(diffs) / len(diffs)
    se = (sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs)) ** 0.5
    assert abs(mean) < 4 * se and se < 0.01


def test_exact_entropy_sums_the_whole_tree_of_prefixes():
    """On a world small enough to list every possible document, the entropy is the mean
    over positions of E_prefix[H(next word | prefix)], summed over the full tree."""
    cfg = ThemesCorpusConfig(n_ctx=10, n_themes=2, words_per_theme=2, n_places=2, n_names=2)
    total, leaves, stack = 0.0, 0, [((BOS,), 1.0)]
    while stack:
        prefix, prob = stack.pop()
        if len(prefix) == cfg.n_ctx:
            leaves += 1
            continue
        dist = next_token_distributions(cfg, prefix)[-1]
        total += prob * -sum(p * math.log(p) for p in dist.values())
        stack += [((*prefix, token), prob * p) for token, p in dist.items()]
    assert leaves > 2000
    assert exact_corpus_entropy(cfg) == pytest.approx(total / (cfg.n_ctx - 1), rel=1e-12)
    sampled = corpus_entropy(CFG, n_docs=400, seed=0)
    assert exact_corpus_entropy(CFG) == pytest.approx(sampled, abs=0.015)  # about 4 standard errors


def _likelihood_given(cfg: ThemesCorpusConfig, words: list[str], theme: str, place: str, name: str) -> float:
    """P(words | topic, place, name), written afresh from the generator's description
    (TEMPLATES and the word lists), sharing no code with codec's predictive: sentences
    are independent, each template has prior 1/len(TEMPLATES), and an unfinished last
    sentence sums over the templates it could still become."""
    content = THEMES[theme][: cfg.words_per_theme]
    weights = [1 / (r + 1) ** cfg.zipf_exponent for r in range(len(content))]
    rings = {"day": CYCLES["weekday"], "month": CYCLES["month"]}

    def slot(part: str, word: str, anchor: dict) -> float:
        if not part.startswith("{"):
            return float(word == part)
        key = part.strip("{}")
        if key == "theme":
            return weights[content.index(word)] / sum(weights) if word in content else 0.0
        if key in ("place", "name"):
            return float(word == {"place": place, "name": name}[key])
        head, step = re.fullmatch(r"(day|month)([+-]\d)?", key).groups()
        ring = rings[head]
        if step is None:
            anchor[head] = word
            return 1 / len(ring) if word in ring else 0.0
        return float(word == ring[(ring.index(anchor[head]) + int(step)) % len(ring)])

    sentences, current = [], []
    for word in words:
        current.append(word)
        if word == ".":
            sentences.append(current)
            current = []
    prob = 1.0
    for sentence in sentences + ([current] if current else []):
        total = 0.0
        for template in TEMPLATES:
            parts, p, anchor = template.split(), 1 / len(TEMPLATES), {}
            if len(parts) < len(sentence):
                continue
            for part, word in zip(parts, sentence):
                p *= slot(part, word, anchor)
                if p == 0:
                    break
            total += p
        prob *= total
    return prob


def test_posterior_predictive_equals_brute_force_marginal_over_the_latents():
    """Chain rule: the product of the predictive probabilities of a prefix must equal the
    prefix's probability summed over every (topic, place, name) the generator could have
    chosen, at every prefix length; that makes each factor the true conditional."""
    cfg = ThemesCorpusConfig(n_ctx=40, n_themes=3, words_per_theme=4, n_places=3, n_names=2)
    latents = list(product(list(THEMES)[:3], EXCLUSIVE["place"][:3], EXCLUSIVE["name"][:2]))
    for doc in documents(cfg, 12, seed=5):
        words = to_text(cfg, doc.tokens).split()
        logp = 0.0
        for t, lp in enumerate(token_logprobs(cfg, doc.tokens), start=1):
            logp += lp
            marginal = sum(_likelihood_given(cfg, words[:t], *z) for z in latents) / len(latents)
            assert logp == pytest.approx(math.log(marginal), abs=1e-9)


def test_sampled_sequences_follow_the_exact_probabilities():
    """Count whole short documents (a full n-gram model of them) and compare with the
    exact probability of each, chi-square style."""
    cfg = ThemesCorpusConfig(n_ctx=6, n_themes=2, words_per_theme=2, n_places=2, n_names=2)
    n = 20_000
    counts = Counter(d.tokens for d in documents(cfg, n, seed=11))
    probs = {seq: math.exp(sum(token_logprobs(cfg, seq))) for seq in counts}
    assert sum(probs.values()) == pytest.approx(1, abs=0.01)
    cells = [s for s in counts if n * probs[s] >= 5]
    rest_o, rest_e = n - sum(counts[s] for s in cells), n * (1 - sum(probs[s] for s in cells))
    chi2 = sum((counts[s] - n * probs[s]) ** 2 / (n * probs[s]) for s in cells) + (rest_o - rest_e) ** 2 / rest_e
    df = len(cells)
    assert df > 50 and chi2 < df + 5 * math.sqrt(2 * df)


@pytest.fixture(scope="module")
def tl_model():
    import transformer_lens as tl

    def make(tokenizer):
        cfg = tl.HookedTransformerConfig(n_layers=1, d_model=32, n_ctx=CFG.n_ctx, d_head=8, n_heads=4, d_mlp=128,
                                         d_vocab=len(vocabulary(CFG)), act_fn="gelu", normalization_type="LN")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return tl.HookedTransformer(cfg, tokenizer=tokenizer)

    return make


def test_tokenizer_round_trips_through_hooked_transformer(tl_model):
    tok = build_tokenizer(CFG)
    assert tok.get_vocab() == {w: i for i, w in enumerate(vocabulary(CFG))} and len(tok) == len(vocabulary(CFG))
    model = tl_model(tok)
    assert model.tokenizer is tok  # kept as given, not reloaded by name
    doc = DOCS[0]
    text = to_text(CFG, doc.tokens)
    assert tok(text)["input_ids"] == list(doc.tokens)
    assert model.to_tokens(text)[0].tolist() == list(doc.tokens)
    assert model.to_tokens(text, prepend_bos=False)[0].tolist() == list(doc.tokens[1:])
    assert model.to_string(model.to_tokens(text)[0]) == "<bos> " + text
    assert model.to_str_tokens(text)[:3] == ["<bos>", *text.split()[:2]]
    short = model.to_tokens([text, "after monday comes"])
    assert short[1].tolist()[:4] == [BOS, *tok.convert_tokens_to_ids(["after", "monday", "comes"])]
    assert (short[1, 4:] == tok.pad_token_id).all()  # padded on the right
    loss = model(next(token_batches(CFG, batch_size=2)), return_type="loss")
    assert math.isfinite(loss.item())


def test_tokenizer_save_load_round_trip(tmp_path, tl_model):
    tok = build_tokenizer(CFG)
    save_tokenizer(tok, tmp_path / "tok")
    assert {p.suffix for p in (tmp_path / "tok").iterdir()} == {".json"}
    loaded = load_tokenizer(tmp_path / "tok")
    texts = [to_text(CFG, d.tokens) for d in DOCS[:20]]
    assert loaded(texts)["input_ids"] == tok(texts)["input_ids"] == [list(d.tokens) for d in DOCS[:20]]
    assert tl_model(loaded).tokenizer is loaded
    with pytest.raises(BadInput):
        load_tokenizer(tmp_path / "missing")
