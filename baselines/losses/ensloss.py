"""EnsLoss: a fresh calibrated convex loss each step, specified by its derivatives."""

from __future__ import annotations

import torch
from torch import Tensor

from harness.core.functional import is_binary
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.errors import Unsupported


def _box_cox_inverse(eps: Tensor, lam: float) -> Tensor:
    """Inverse Box-Cox transform: exp(eps) for lam = 0, else (lam*eps + 1)^(1/lam).

    The base lam*eps + 1 is floored at the smallest positive normal float: below
    zero the power is undefined. For lam > 0 the floor gives a value near 0
    (a derivative near 0, made strictly negative later); for lam < 0 it gives a
    huge value, which the clip at -1 then bounds.
    """
    if lam == 0.0:
        return torch.exp(eps)
    base = (lam * eps + 1.0).clamp_min(torch.finfo(eps.dtype).tiny)
    return base ** (1.0 / lam)


def ensloss_derivatives(z: Tensor, generator: torch.Generator | None, lam: float = 0.0) -> Tensor:
    """One random draw of EnsLoss loss-derivatives g_i at margins z_i.

    Ben Dai, "EnsLoss: Stochastic Calibrated Loss Ensembles for Preventing
    Overfitting in Classification" (ICML 2025), the derivative-generating step:

    1. eps_i ~ N(0, 1), g~_i = -BoxCoxInverse_lam(eps_i)   (lam = 0: -exp(eps_i));
    2. sort g~ ascending and clip at -1, i.e. g~ <- max(g~, -1);
    3. assign by rank: the smallest margin gets the most negative derivative;
    4. where z_i > 1, g_i <- g_i / z_i;
    5. g <- g - 1e-6.

    "Clip at -1" bounds the derivative from below: g~ = max(g~, -1), so g lies in
    [-1 - 1e-6, -1e-6). This is the reading under which the implied loss is
    calibrated and convex with a bounded derivative, like the logistic loss:
    every g is strictly negative (step 5), g is non-decreasing in the margin
    (step 3, and step 4 only moves values towards 0, more so for larger z, so
    the order is kept), and |g| <= 1 + 1e-6. With lam = 0 about half of the
    draws sit at -1 (those with eps > 0), given to the smallest margins, which
    mimics a hinge's slope for badly classified samples. The other reading,
    min(g~, -1), would make every |g| >= 1 and unbounded, which is not a
    calibrated loss's shape past the margin. The ensLoss reference code clips
    the same way (an element-wise maximum with -1).

    ``z`` is the (N,) batch of margins (a 2-D input would be ranked per column).
    It is treated as a constant (no gradient).
    """
    z = z.detach()
    eps = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    g_tilde = -_box_cox_inverse(eps, lam)
    g_sorted = torch.sort(g_tilde, dim=0).values.clamp_min(-1.0)
    order = torch.sort(z, dim=0, stable=True).indices  # stable: ties in z break the same way every run
    g = torch.empty_like(z).scatter_(0, order, g_sorted)
    g = g / z.clamp_min(1.0)  # divides exactly where z > 1, leaves the rest as is
    return g - 1e-6


@register_method("ensloss")
class EnsLoss(Method):
    """EnsLoss (Ben Dai, ICML 2025): loss = mean(stopgrad(g) * z), g from :func:`ensloss_derivatives`.

    The surrogate is defined through its derivative: each step draws a new
    monotone, strictly negative derivative g and the gradient w.r.t. f(x_i) is
    g_i * y~_i / N. Randomness comes from ``state.generator``, so a seed fixes
    the whole sequence of losses.

    Binary only, as the paper and its reference code: a K-class case is
    skipped. ``ensloss-mc`` is this project's multiclass extension.
    """

    family = "loss"
    protocols = frozenset({"supervised"})
    hparams = dict(lam=0.0)
    binary_only = True

    def loss(self, logits: Tensor, batch: Batch, state: State) -> Tensor:
        if not is_binary(logits):
            raise Unsupported(f"ensloss is binary-only but got {logits.shape[1]} logits per sample; use ensloss-mc")
        z = (2.0 * batch.y.to(logits.dtype) - 1.0) * logits
        g = ensloss_derivatives(z, state.generator, self.hparams["lam"])
        return (g * z).mean()
