"""The one learning-rate schedule (codec_cli/nn/schedule.py): its shape."""

from __future__ import annotations

import pytest

from codec_cli.nn.schedule import DECAYS, learning_rate


def rates(steps: int, **kw) -> list[float]:
    return [learning_rate(s, steps, **kw) for s in range(steps)]


@pytest.mark.parametrize("decay", DECAYS)
def test_the_warm_up_ramps_linearly_to_the_peak(decay):
    r = rates(50, peak=2.0, warmup=10, decay=decay, final=0.1)
    assert r[:10] == pytest.approx([2.0 * (s + 1) / 10 for s in range(10)])
    assert r[0] > 0 and r[9] == pytest.approx(2.0) and r[10] == pytest.approx(2.0)


@pytest.mark.parametrize("decay", ["linear", "cosine"])
@pytest.mark.parametrize("warmup", [0, 1, 10])
def test_the_decay_is_monotone_down_to_the_final_fraction_at_the_last_step(decay, warmup):
    r = rates(110, peak=3.0, warmup=warmup, decay=decay, final=0.25)
    after = r[max(warmup - 1, 0):]
    assert all(a >= b for a, b in zip(after, after[1:]))
    assert r[-1] == pytest.approx(0.75) and min(r[warmup:]) == pytest.approx(0.75)


def test_constant_holds_the_peak_after_the_warm_up():
    assert rates(20, peak=0.5, warmup=4, decay="constant", final=0.1)[4:] == [0.5] * 16
    assert rates(5, peak=1e-3, decay="constant") == [1e-3] * 5


def test_cosine_and_linear_meet_at_the_ends_and_cosine_stays_above_in_the_first_half():
    cos, lin = rates(101, decay="cosine"), rates(101, decay="linear")
    assert cos[0] == lin[0] == 1.0 and cos[-1] == pytest.approx(0.0, abs=1e-12) and lin[-1] == 0.0
    assert cos[50] == pytest.approx(0.5) and all(c >= l for c, l in zip(cos[1:50], lin[1:50]))


def test_end_moves_where_the_final_value_is_reached_and_it_is_held_after():
    # The themes model's cosine ends one step past the last, so its last step still learns.
    r = rates(100, decay="cosine", end=100)
    assert r[-1] > 0 and learning_rate(100, 100, decay="cosine", end=100) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(150, 100, decay="linear", final=0.2) == pytest.approx(0.2)


def test_a_warm_up_longer_than_the_run_stays_on_the_ramp():
    assert rates(5, warmup=10) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])


def test_an_unknown_decay_is_refused():
    with pytest.raises(ValueError, match="decay"):
        learning_rate(0, 10, decay="exponential")
