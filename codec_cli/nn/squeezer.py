"""The Squeezer: SAE features squeezed into M synthetic neurons and read back out.

For one token, x ∈ R^F holds its top-k SAE feature activations (zeros elsewhere):

    h  = W_encᵀ x + b_enc             M synthetic neurons (linear, or ReLU)
    x̂  = ReLU(W_dec h + b_dec)        tied by default: W_dec = W_encᵀ
    loss = mean over features of w_f (x_f − x̂_f)²      the zeros count too

— Elhage et al.'s toy model of superposition (2022) applied to real features. Several
independently initialised *instances* train side by side on the same batches, so that
restarts cost one data pipeline; the best by held-out loss is kept.

Two things make it fast. The encoder never builds the dense F-wide input: x has k
nonzeros, so W_encᵀx is an `embedding_bag` over them. The decoder is dense by nature
and `DecoderLoss` runs it as one matrix multiply forward and two backward, with the
ReLU, the sparse target and the squared error folded in place into that one [B, F]
buffer (autograd would keep four of them).

Weights are laid out as sae-lens lays out an SAE's: W_enc [F, M] (row f is feature
f's direction), W_dec [M, F].
"""

from __future__ import annotations

import math

import torch

NEURON_ACTS = ("linear", "relu")


class DecoderLoss(torch.autograd.Function):
    """Per instance, mean_{b,f} w_f (ReLU(h W_dec + b_dec) − x)²_{bf}, x given sparse.

    h [R, B, M], W_dec [R, M, F], b_dec [R, F]; idx, val [B, k] the target's nonzeros
    (padding: index 0 with value 0); weight [F] (mean 1) or None; dtype, the precision of
    the products (None: the inputs'). Returns [R], summed in float32 at least.
    """

    @staticmethod
    def forward(ctx, h, W_dec, b_dec, idx, val, weight, dtype=None):
        ctx.dtypes = (h.dtype, W_dec.dtype, b_dec.dtype)
        if dtype is not None:
            h, W_dec, b_dec = h.to(dtype), W_dec.to(dtype), b_dec.to(dtype)
        R, B, _ = h.shape
        F = W_dec.shape[-1]
        diff = torch.baddbmm(b_dec.unsqueeze(1), h, W_dec).relu_()
        flat = diff.view(R * B, F)
        where = idx.repeat(R, 1)
        # The ReLU's gradient is zero where x̂ = 0; only the k target slots can be nonzero
        # there once x is subtracted, so their mask is all backward needs to remember.
        live = flat.gather(1, where) > 0
        flat.scatter_add_(1, where, -val.to(diff.dtype).repeat(R, 1))
        wide = torch.promote_types(diff.dtype, torch.float32)  # bf16 products, float32 sums
        if weight is None:
            total = torch.linalg.vector_norm(diff.view(R, -1), dim=1, dtype=wide) ** 2
        else:
            total = (diff.to(wide).square() @ weight.to(wide)).sum(1)
        ctx.save_for_backward(h, W_dec, diff, where, live, weight)
        return total / (B * F)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        h, W_dec, g, where, live, weight = ctx.saved_tensors
        R, B, F = g.shape
        flat = g.view(R * B, F)  # the forward's buffer, reused: backward runs once
        flat.scatter_(1, where, flat.gather(1, where) * live)
        g.mul_((2.0 / (B * F)) * grad.to(g.dtype).view(R, 1, 1))
        if weight is not None:
            g.mul_(weight.to(g.dtype))
        grad_h = torch.bmm(g, W_dec.transpose(1, 2)).to(ctx.dtypes[0]) if ctx.needs_input_grad[0] else None
        grad_W = torch.bmm(h.transpose(1, 2), g).to(ctx.dtypes[1]) if ctx.needs_input_grad[1] else None
        return grad_h, grad_W, g.sum(1).to(ctx.dtypes[2]), None, None, None, None


class Squeezer(torch.nn.Module):
    """`instances` Squeezers of F features into M neurons, trained side by side."""

    def __init__(self, n_features: int, n_neurons: int, *, instances: int = 1, tied: bool = True,
                 neuron_act: str = "linear", seed: int = 0):
        super().__init__()
        F, M, R = n_features, n_neurons, instances
        self.tied, self.neuron_act = tied, neuron_act
        self.compute_dtype: torch.dtype | None = None
        """The decoder's matrix-multiply precision (e.g. torch.bfloat16 on a GPU); None: the weights'."""
        gen = torch.Generator().manual_seed(seed)
        std = math.sqrt(2.0 / (F + M))  # Xavier-normal per [F, M] matrix, as the toy model
        # [F, R, M]: viewed as [F, R·M], one embedding_bag encodes every instance at once.
        self.W_enc = torch.nn.Parameter(torch.randn(F, R, M, generator=gen) * std)
        self.b_enc = torch.nn.Parameter(torch.zeros(R, M))
        self.W_dec = None if tied else torch.nn.Parameter(torch.randn(R, M, F, generator=gen) * std)
        self.b_dec = torch.nn.Parameter(torch.zeros(R, F))

    @property
    def shape(self) -> tuple[int, int, int]:
        """(instances, features, neurons)."""
        F, R, M = self.W_enc.shape
        return R, F, M

    def decoder(self) -> torch.Tensor:
        """W_dec as [R, M, F] (a view of W_enc when tied)."""
        return self.W_enc.permute(1, 2, 0) if self.tied else self.W_dec

    def encode(self, idx: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        """Neuron activations [R, B, M] of sparse inputs idx, val [B, k]."""
        R, F, M = self.shape
        h = torch.nn.functional.embedding_bag(idx, self.W_enc.view(F, R * M), per_sample_weights=val.to(self.W_enc.dtype),
                                              mode="sum")
        h = h.view(-1, R, M).transpose(0, 1) + self.b_enc.unsqueeze(1)
        return h.relu() if self.neuron_act == "relu" else h

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Dense reconstructions [R, B, F]."""
        return torch.baddbmm(self.b_dec.unsqueeze(1), h, self.decoder()).relu_()

    def loss(self, idx: torch.Tensor, val: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The training loss of each instance on one batch: [R]."""
        return DecoderLoss.apply(self.encode(idx, val), self.decoder(), self.b_dec, idx, val, weight,
                                 self.compute_dtype)

    @torch.no_grad()
    def project(self) -> None:
        """After each optimiser step: a ReLU neuron's bias stays a firing threshold (b_enc ≤ 0).

        A positive bias lets a neuron sit in its linear range, where the ReLU never bites and
        b_dec cancels the offset: the loss is lower, but the neurons are then as freely
        rotatable as linear ones and the basis means nothing (docs/squeeze.md). Elhage et
        al.'s privileged-basis toy model has no hidden bias at all; a threshold keeps that
        basis while letting a neuron ignore weak interference."""
        if self.neuron_act == "relu":
            self.b_enc.clamp_(max=0.0)

    def gain(self) -> torch.Tensor:
        """Each feature's round trip W_enc_f · W_dec_f (‖W_f‖² when tied): [R, F]."""
        return torch.einsum("frm,rmf->rf", self.W_enc, self.decoder())

    def weights(self, i: int) -> dict[str, torch.Tensor]:
        """Instance i's weights as saved: W_enc [F, M], b_enc [M], W_dec [M, F], b_dec [F]."""
        return {"W_enc": self.W_enc[:, i].detach().clone(), "b_enc": self.b_enc[i].detach().clone(),
                "W_dec": self.decoder()[i].detach().contiguous(), "b_dec": self.b_dec[i].detach().clone()}

    @classmethod
    def from_weights(cls, w: dict, *, tied: bool, neuron_act: str) -> Squeezer:
        """One instance from `weights()`'s tensors (numpy or torch)."""
        t = {k: torch.as_tensor(v).float() for k, v in w.items() if k in ("W_enc", "b_enc", "W_dec", "b_dec")}
        F, M = t["W_enc"].shape
        s = cls(F, M, tied=tied, neuron_act=neuron_act)
        with torch.no_grad():
            s.W_enc.copy_(t["W_enc"].unsqueeze(1))
            s.b_enc.copy_(t["b_enc"].unsqueeze(0))
            s.b_dec.copy_(t["b_dec"].unsqueeze(0))
            if not tied:
                s.W_dec.copy_(t["W_dec"].unsqueeze(0))
        return s
