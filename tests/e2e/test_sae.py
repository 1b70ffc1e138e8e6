"""SAE training with sae-lens's classes: it recovers planted features, resumes to the
same weights, and saves what sae-lens's own loader opens with identical outputs."""

from __future__ import annotations

import pytest
import torch

from codec_cli.errors import BadInput
from codec_cli.nn.sae import SAETrainConfig, evaluate, train

D_IN, N_TRUE = 16, 32


def dictionary() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.nn.functional.normalize(torch.randn(N_TRUE, D_IN, generator=g), dim=1)


def batch(step: int) -> torch.Tensor:
    """Sparse non-negative codes over a known dictionary: the answer an SAE should find."""
    g = torch.Generator().manual_seed(1000 + step)
    on = torch.rand(512, N_TRUE, generator=g) < 0.06
    return (on * torch.rand(512, N_TRUE, generator=g)) @ dictionary()


def mean_max_cosine(sae) -> float:
    found = torch.nn.functional.normalize(sae.W_dec.detach(), dim=1)
    return float((dictionary() @ found.T).max(1).values.mean())


@pytest.fixture(scope="module")
def topk():
    return train(SAETrainConfig(expansion_factor=2, k=3, steps=800, lr=3e-3), batch, D_IN)


@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_recovers_planted_features(arch, topk):
    sae, history = topk if arch == "topk" else train(
        SAETrainConfig(architecture="relu", expansion_factor=2, steps=800, lr=3e-3, l1_coefficient=0.3), batch, D_IN)
    m = evaluate(sae, batch(10**6))
    assert mean_max_cosine(sae) > 0.9
    assert m["fvu"] < 0.25 and m["dead_fraction"] < 0.1
    assert (2.0 < m["l0"] <= 3.0) if arch == "topk" else (0.5 < m["l0"] < 6)
    assert history[-1]["mse_loss"] < history[0]["mse_loss"] / 3


def test_resume_ends_with_the_same_weights(tmp_path):
    cfg = SAETrainConfig(expansion_factor=2, k=3, steps=120, lr=3e-3, checkpoint_every=50)
    straight, _ = train(cfg, batch, D_IN)
    interrupted = SAETrainConfig(**{**cfg.__dict__, "steps": 100})
    train(interrupted, batch, D_IN, checkpoint=tmp_path)  # "killed" after its step-100 checkpoint
    resumed, history = train(cfg, batch, D_IN, checkpoint=tmp_path)
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0)
    assert history[-1]["step"] == 120


def test_saved_sae_round_trips_through_sae_lens(tmp_path, topk):
    from sae_lens import SAE

    sae, _ = topk
    sae.save_inference_model(tmp_path / "sae")
    loaded = SAE.load_from_disk(tmp_path / "sae")
    x = batch(7)
    # Saving folds the decoder norms into the encoder: the same SAE up to float rounding.
    torch.testing.assert_close(loaded.decode(loaded.encode(x)), sae.decode(sae.encode(x)), rtol=1e-4, atol=1e-5)
    loaded.save_model(tmp_path / "again")
    again = SAE.load_from_disk(tmp_path / "again")
    assert type(again).__name__ == "TopKSAE" and again.cfg.k == 3
    torch.testing.assert_close(again.encode(x), loaded.encode(x), rtol=0, atol=0)
    torch.testing.assert_close(again.decode(again.encode(x)), loaded.decode(loaded.encode(x)), rtol=0, atol=0)


def test_evaluate_known_answers():
    class Identity:
        def encode(self, x):
            return torch.relu(torch.cat([x, -x], -1))

        def decode(self, f):
            return f[:, :D_IN] - f[:, D_IN:]

    x = batch(3)
    m = evaluate(Identity(), x)
    assert m["fvu"] == 0.0 and m["d_sae"] == 2 * D_IN


@pytest.mark.parametrize("kw, message", [
    ({"architecture": "jumprelu"}, "architecture must be one of topk, relu, not 'jumprelu'"),
    ({"steps": 0}, "steps must be at least 1, got 0"),
    ({"k": 0}, "k must be at least 1, got 0"),
    ({"lr": 0.0}, "lr must be positive, got 0.0"),
])
def test_bad_config(kw, message):
    """From Python a bad value is named as the field, not as a flag (the CLI shows the flag)."""
    with pytest.raises(BadInput, match=f"^{message}") as e:
        SAETrainConfig(**kw)
    assert "--" not in str(e.value)


def test_k_wider_than_sae():
    with pytest.raises(BadInput, match="larger than the SAE's width"):
        train(SAETrainConfig(k=100, steps=1), batch, D_IN)


def test_fvu_is_null_where_the_activations_never_vary():
    from codec_cli.nn.sae import evaluate

    class Zero:
        def encode(self, x):
            return torch.zeros(len(x), 4)

        def decode(self, a):
            return torch.zeros(len(a), 3)

    assert evaluate(Zero(), torch.zeros(8, 3))["fvu"] is None
