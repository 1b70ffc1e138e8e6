"""The comparison's streaming statistics against their one-shot definitions."""

from __future__ import annotations

import numpy as np
import pytest

from codec_cli.sources.features import sparse_rows
from codec_cli.stages.compare_neurons import Centred, Moves, Moments, cycle, match, overlaps


def test_chunked_co_moments_give_numpys_correlations() -> None:
    rng = np.random.default_rng(0)
    S = (rng.normal(size=(3000, 5)) + 1e3).astype(np.float32)  # large means: a naive Σxy would cancel
    R = (S[:, :4] * 0.5 + rng.normal(size=(3000, 4)) + 7e2).astype(np.float32)
    m = Moments(5, 4)
    for lo, hi in ((0, 7), (7, 1000), (1000, 1001), (1001, 3000)):
        m.add(S[lo:hi], Centred.of(R[lo:hi]))
    want = np.corrcoef(S.astype(np.float64).T, R.astype(np.float64).T)[:5, 5:]
    # float32 data near 1e3 resolve 6e-5 each: 1e-5 is what the data allow; a naive Σxy − nμμ in
    # float32 would be off by orders of magnitude more.
    assert m.n == 3000 and np.abs(m.corr() - want).max() < 1e-5


def test_a_neuron_that_never_varies_has_no_correlation() -> None:
    S = np.ones((100, 2), np.float32)
    S[:, 1] = np.arange(100)
    m = Moments(2, 1)
    m.add(S, Centred.of(np.arange(100, dtype=np.float32)[:, None]))
    c = m.corr()
    assert np.isnan(c[0, 0]) and c[1, 0] == pytest.approx(1.0)


def test_moves_are_least_squares_slopes_times_the_typical_activation() -> None:
    rng = np.random.default_rng(1)
    n, F = 2000, 3
    idx = np.stack([rng.permutation(F)[:2] for _ in range(n)])
    val = rng.random((n, 2)).astype(np.float32) + 0.5
    fired = rng.random((n, 2)) < 0.6
    x = np.zeros((n, F))
    np.put_along_axis(x, idx, np.where(fired, val, 0), 1)
    H = (x @ np.array([[2.0], [0.0], [-1.0]]) + rng.normal(scale=0.01, size=(n, 1))).astype(np.float32)
    moves = Moves(F, 1)
    for lo in range(0, n, 500):
        stored = np.where(fired, idx, -1)[lo:lo + 500]  # an unfired slot is an empty one
        moves.add(sparse_rows(stored, val[lo:lo + 500], F), H[lo:lo + 500])
    for f in range(F):
        slope = np.polyfit(x[:, f], H[:, 0], 1)[0]
        assert moves.moves()[f, 0] == pytest.approx(slope * x[x[:, f] > 0, f].mean(), rel=1e-6)


def test_a_cyclic_permutation_moves_everything() -> None:
    rng = np.random.default_rng(2)
    for n in (2, 3, 10, 257):
        p = cycle(n, rng)
        assert sorted(p) == list(range(n)) and (p != np.arange(n)).all()


def test_the_matching_undoes_a_permutation_and_overlaps_count_sets() -> None:
    perm = np.array([2, 0, 3, 1])
    corr = np.eye(4)[perm] * 0.9 + 0.01  # synthetic i fires with real perm[i]
    s, r, v = match(corr, sign_free=False)
    assert (r == perm).all() and np.allclose(v, 0.91)
    s, r, v = match(-corr, sign_free=True)  # linear neurons: the sign is arbitrary
    assert (r == perm).all()
    a = np.array([[1.0, 0.0], [0.5, 1.0], [0.0, 0.2]])
    b = np.array([[1.0, 0.0], [0.0, 0.5], [0.0, 0.0]])
    jac, wj = overlaps(a, b)
    assert jac.tolist() == [0.5, 0.5] and wj.tolist() == pytest.approx([1 / 1.5, 0.5 / 1.2])
