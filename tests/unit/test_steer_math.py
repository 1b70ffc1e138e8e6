"""The formulas behind `codec steer` and `codec monitor`, on hand-made numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from codec_cli.config import strengths
from codec_cli.errors import BadParameter
from codec_cli.sources.theme import Setting, batches
from codec_cli.stages.monitor import auroc, threshold, token_scores
from codec_cli.stages.steer import Intervention, coherence, sizes, slope


def test_a_sweep_is_read_with_both_ends_and_refused_when_it_is_no_sweep():
    assert strengths("0:1:0.25") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert strengths("0:0.3:0.1") == [0.0, 0.1, 0.2, 0.3]
    assert strengths("-1,0,2.5") == [-1.0, 0.0, 2.5]
    for bad in ("1:0:0.5", "0:1:0", "a:b:c", "0,0", "", "nan"):
        with pytest.raises(BadParameter):
            strengths(bad)


def test_adding_is_norm_matched_per_position_and_leaves_bos_alone():
    torch.manual_seed(0)
    x = torch.randn(3, 6, 16) * torch.linspace(0.5, 4, 6)[None, :, None]
    v = torch.randn(16)
    v = v / v.norm()
    y = Intervention("add", 0.7, direction=v)(x)
    assert torch.equal(y[:, 0], x[:, 0])
    torch.testing.assert_close((y - x)[:, 1:].norm(dim=-1), 0.7 * x[:, 1:].norm(dim=-1))
    torch.testing.assert_close((y - x)[:, 1:] / (y - x)[:, 1:].norm(dim=-1, keepdim=True), v.expand(3, 5, 16))
    fixed = Intervention("add", 0.5, direction=v, scale=3.0)(x)
    torch.testing.assert_close((fixed - x)[:, 1:].norm(dim=-1), torch.full((3, 5), 1.5))
    assert torch.equal(Intervention("add", 0.0, direction=v)(x), x)  # strength 0: the same bits


def test_clamping_atoms_that_do_not_fire_to_zero_changes_nothing_and_keeps_the_error_term():
    from codec_cli.worlds import open_world

    sae = open_world("themes").sae("resid0").eval()
    setting = Setting(None, sae, "blocks.0.hook_resid_pre", None, None, None, None, None, None, None)
    torch.manual_seed(0)
    x = torch.randn(2, 5, sae.cfg.d_in)
    a = setting.encode(x[:, 1:])
    silent = torch.nonzero(a.amax((0, 1)) == 0).flatten()[:5]
    y = Intervention("clamp", 0.0, setting=setting, atoms=silent, values=torch.zeros(len(silent)))(x)
    assert torch.equal(y, x)
    active = torch.nonzero(a.amax((0, 1)) > 0).flatten()[:3]
    y = Intervention("clamp", 0.0, setting=setting, atoms=active, values=torch.zeros(3))(x)
    with torch.no_grad():
        clamped = a.clone()
        clamped[..., active] = 0
        # x' = x + dec(a') - dec(a): the reconstruction changed, the SAE's error x - dec(a) kept.
        torch.testing.assert_close(y[:, 1:] - sae.decode(clamped), x[:, 1:] - sae.decode(a))


def test_token_scores_by_each_rule():
    a = torch.tensor([[[1.0, 2.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]])
    g = [torch.tensor([0, 1]), torch.tensor([2])]
    assert token_scores(a, g, "sum").tolist() == [[[3.0, 0.0]], [[0.0, 0.0]]]
    assert token_scores(a, g, "max").tolist() == [[[2.0, 0.0]], [[0.0, 0.0]]]
    assert token_scores(a, g, "share").tolist() == [[[0.75, 0.0]], [[0.0, 0.0]]]


def test_the_threshold_lets_at_most_the_rate_through_and_auroc_counts_ties_half():
    cal = np.arange(100.0)
    t = threshold(cal, 0.05)
    assert (cal > t).mean() <= 0.05 and (cal >= t).mean() > 0.05
    assert threshold(cal, 0.001) == 99.0  # fewer texts than the rate resolves: nothing above the largest
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 40).astype(float), rng.integers(0, 4, 60).astype(float)
    assert auroc(pos, neg) == pytest.approx(roc_auc_score(np.r_[np.ones(40), np.zeros(60)], np.r_[pos, neg]))
    assert auroc(np.ones(3), np.ones(4)) == 0.5


def test_coherence_counts_distinct_and_repeated_ngrams():
    c = coherence([1, 2, 1, 2, 1, 2])
    assert c["distinct_1"] == pytest.approx(2 / 6) and c["distinct_2"] == pytest.approx(2 / 5)
    assert c["repeat_3"] == pytest.approx(2 / 4)  # (1,2,1) and (2,1,2) each come back once
    assert coherence([1, 2, 3, 4]) == {"distinct_1": 1.0, "distinct_2": 1.0, "repeat_3": 0.0}


def test_snr_against_n_is_measured_on_powers_of_two_and_its_slope_is_a_power_law():
    assert sizes(1) == [1] and sizes(10) == [1, 2, 4, 8, 10] and sizes(8) == [1, 2, 4, 8]
    ns = [1, 2, 4, 8]
    assert slope(ns, [3 * math.sqrt(n) for n in ns]) == pytest.approx(0.5)
    assert slope(ns, [1.0, -1.0, None, 0.0]) is None  # fewer than two positive SNRs: no slope


def test_texts_are_batched_by_length_in_order():
    texts = [torch.zeros(n) for n in (3, 2, 3, 3, 2)]
    assert list(batches(texts, 2)) == [[1, 4], [0, 2], [3]]
