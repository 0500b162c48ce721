"""Unknown Domain Inconsistency Minimization."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.dg.sam import ascend, restore, sam_step, trainable
from harness.method import Batch, Method, State, cross_entropy
from harness.registry import register_method


def perturb_inputs(model: nn.Module, x: Tensor, y: Tensor, rho: float, eta: float) -> tuple[Tensor, Tensor]:
    """x̃ = x + η·∇ₓ[CE + ρ‖∇_θ CE‖] / ‖·‖ per sample, and the clean CE at θ.

    Steps towards inputs whose loss *and* sharpness are high: a crafted unknown
    domain. Needs a double backward (the ‖∇_θ CE‖ term).
    """
    x_in = x.detach().clone().requires_grad_(True)
    ce = cross_entropy(model(x_in), y)
    grads = torch.autograd.grad(ce, trainable(model), create_graph=True, allow_unused=True)
    sq = torch.stack([g.pow(2).sum() for g in grads if g is not None]).sum()
    grad_x, = torch.autograd.grad(ce + rho * (sq + 1e-24).sqrt(), x_in)  # 1e-24: finite d√ at 0
    norms = grad_x.flatten(1).norm(dim=1).view(-1, *[1] * (x.ndim - 1))
    return (x + eta * grad_x / (norms + 1e-12)).detach(), ce.detach()


def gradient_statistics_gap(features: Tensor, logits: Tensor, y: Tensor, n: int) -> Tensor:
    """Gap between the last layer's per-sample gradients on rows [:n] (clean) and [n:] (perturbed).

    For a linear head, ∂CE_i/∂W = r_i ⊗ h_i and ∂CE_i/∂b = r_i with r = softmax − onehot
    (binary: r = σ(f) − y), so per-sample gradients need no extra backward. Each
    side's second moment is taken about the *clean* mean, as the reference code
    does, so a shift of the mean and a change of spread are both penalised; the
    result is the mean squared difference of the two.
    """
    if logits.ndim == 1:
        r = (torch.sigmoid(logits) - y.to(logits.dtype))[:, None]
    else:
        r = logits.softmax(1) - F.one_hot(y, logits.shape[1]).to(logits.dtype)
    grads = torch.cat([(r[:, :, None] * features[:, None, :]).flatten(1), r], dim=1)
    clean, perturbed = grads[:n], grads[n:]
    centre = clean.mean(0)
    return ((clean - centre).pow(2).mean(0) - (perturbed - centre).pow(2).mean(0)).pow(2).mean()


@register_method("udim")
class UDIM(Method):
    """UDIM (Shin et al., "Unknown Domain Inconsistency Minimization for Domain Generalization", ICLR 2024).

    After plain SAM for the first ``warmup_frac`` of the steps, each step
    (1) crafts x̃ with :func:`perturb_inputs` (η = the per-sample L2 norm of
    x̃ − x, in the model's input units: with standardised 3×32×32 inputs,
    η = 1 is an RMS change of ≈0.018 per element; the reference's crafted
    domains are stronger, so scale η with the input size), (2) takes the SAM
    gradient on the clean batch with ε = ρ·g̃/‖g̃‖ built from the gradient on x̃,
    and (3) adds λ·∇ of :func:`gradient_statistics_gap` at θ. The head must be
    the single linear layer of ``harness.models.Classifier``. ``loss`` is
    CE(x) at θ plus λ·penalty.
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    hparams = dict(rho=0.05, eta=1.0, lam=1.0, warmup_frac=0.2)

    def train_step(self, model: nn.Module, batch: Batch, optimizer: torch.optim.Optimizer, state: State) -> dict:
        rho, lam = self.hparams["rho"], self.hparams["lam"]
        if state.step < int(self.hparams["warmup_frac"] * state.total_steps):
            return sam_step(model, batch.x, batch.y, optimizer, rho)
        x, y, n = batch.x, batch.y, len(batch)
        x_tilde, ce = perturb_inputs(model, x, y, rho, self.hparams["eta"])
        optimizer.zero_grad(set_to_none=True)
        params = trainable(model)
        # (2) ascent direction from the crafted domain, descent gradient from the clean batch
        grads = torch.autograd.grad(cross_entropy(model(x_tilde), y), params, allow_unused=True)
        saved = ascend(params, grads, rho)
        loss_perturbed = cross_entropy(model(x), y)
        loss_perturbed.backward()
        restore(params, saved)
        # (3) inconsistency penalty at θ; its gradient adds to the SAM gradient already in .grad
        features = model.featurizer(torch.cat([x, x_tilde]))
        penalty = gradient_statistics_gap(features, model.classifier(features), torch.cat([y, y]), n)
        (lam * penalty).backward()
        optimizer.step()
        return {"loss": ce + lam * penalty.detach(), "ce": ce, "loss_perturbed": loss_perturbed.detach(),
                "penalty": penalty.detach()}
