"""Unknown Domain Inconsistency Minimization."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.dg.sam import ascend, restore, sam_step, trainable
from harness.core.engine import StepEngine
from harness.core.functional import cross_entropy
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.errors import HparamError

SCOPES = ("batch", "domain")


def sharpness_gradients(model: nn.Module, x: Tensor, y: Tensor, rho: float, eta: float,
                        engine: StepEngine | None = None
                        ) -> tuple[Tensor, list[Tensor | None], Tensor]:
    """One pass at θ on the clean batch: (CE, ∇_θ CE, x̃).

    x̃ = x + η · normalize(∇ₓ[CE + ρ‖∇_θ CE‖]) steps towards inputs whose loss *and* sharpness are high (a crafted
    unknown domain). As in the reference (``F.normalize(grad, p=2, dim=0)``), the input gradient is normalised over
    the batch dimension: for every input element, the vector of its changes across the batch has L2 norm η, so a
    sample moves by about η/√N per element whatever the image size. Needs a double backward (the ‖∇_θ CE‖ term).
    """
    grad = torch.autograd.grad if engine is None else engine.grad  # the engine unscales under fp16
    x_in = x.detach().clone().requires_grad_(True)
    ce = cross_entropy(model(x_in), y)
    grads = grad(ce, trainable(model), create_graph=True, allow_unused=True)
    sq = torch.stack([g.pow(2).sum() for g in grads if g is not None]).sum()
    grad_x, = grad(ce + rho * (sq + 1e-24).sqrt(), x_in)  # 1e-24: finite d√ at 0
    x_tilde = x + eta * F.normalize(grad_x, p=2.0, dim=0, eps=1e-12)
    return ce.detach(), [None if g is None else g.detach() for g in grads], x_tilde.detach()


def gradient_statistics_gap(features: Tensor, logits: Tensor, y: Tensor, n: int) -> Tensor:
    """Inconsistency of the last layer's per-sample gradients between rows [:n] (clean) and [n:] (perturbed).

    For a linear head, ∂CE_i/∂W = r_i ⊗ h_i and ∂CE_i/∂b = r_i with r = softmax − onehot (binary: r = σ(f) − y), so
    per-sample gradients need no extra backward. As the reference (``iada_final.py``: ``_get_grads_var``,
    ``_compute_distance_grads_var``, ``_grads_norm_syn``):

        mean_j (v_clean_j − v_pert_j)² / 4  +  Σ_{W, b} mean_i ‖g_pert_i‖² / size,

    with v the per-entry second moment of each side's gradients about the *clean* mean (a shifted mean and a
    changed spread both count; /4 is the reference's average of each side's distance to the two sides' mean), and
    the second term the perturbed samples' squared gradient norms per parameter tensor, divided by its size.
    """
    if logits.ndim == 1:
        r = (torch.sigmoid(logits) - y.to(logits.dtype))[:, None]
    else:
        r = logits.softmax(1) - F.one_hot(y, logits.shape[1]).to(logits.dtype)
    weight = (r[:, :, None] * features[:, None, :]).flatten(1)
    grads = torch.cat([weight, r], dim=1)
    clean, perturbed = grads[:n], grads[n:]
    centre = clean.mean(0)
    var_gap = ((clean - centre).pow(2).mean(0) - (perturbed - centre).pow(2).mean(0)).pow(2).mean() / 4
    norms = weight[n:].pow(2).sum(1).mean() / weight.shape[1] + r[n:].pow(2).sum(1).mean() / r.shape[1]
    return var_gap + norms


@register_method("udim")
class UDIM(Method):
    """UDIM (Shin et al., "Unknown Domain Inconsistency Minimization for Domain Generalization", ICLR 2024),
    following the reference code (github.com/aailabkaist/UDIM, ``IADA_DG_FINAL`` in ``algorithms.py`` and
    ``domainbed/iada/iada_final.py``).

    Plain SAM for the first ``warmup_frac`` of the steps (the reference's scripts: ``--sam_warm_up_ratio 5``).
    Then each step, from one double-backward pass at θ on the clean batch x (:func:`sharpness_gradients`):

    1. ε = ρ·g/‖g‖ with g = ∇_θ CE(x), and the crafted domain x̃ (η = ``eta``, the reference's ``syn_lr``;
       its PACS scripts use 10);
    2. the SAM gradient ∇_θ CE(x; θ + ε) on the clean batch (the reference builds ε before perturbing x, so
       the ascent and the descent both use the clean batch);
    3. plus λ·∇ of :func:`gradient_statistics_gap` at θ between x and x̃ (λ = ``lam``, ``worst_weight``: 1 in
       the scripts).

    Penalty scope (recorded in the hparams): ``"batch"`` compares the clean and perturbed batches as a whole, as
    both reference scripts run (``--is_single True`` sets ``domain_wise_inconsistency = False``); ``"domain"``
    sums the penalty over the training domains' slices, the reference's default without that flag. The head must
    be the single linear layer of ``harness.core.models.Classifier``. ``loss`` is CE(x) at θ plus λ·penalty.
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    hparams = dict(rho=0.05, eta=10.0, lam=1.0, warmup_frac=0.2, penalty_scope="batch")

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if self.hparams["penalty_scope"] not in SCOPES:
            raise HparamError(f"udim: penalty_scope={self.hparams['penalty_scope']!r}; choose one of {SCOPES}")

    def penalty(self, model: nn.Module, x: Tensor, x_tilde: Tensor, y: Tensor, domain: Tensor | None) -> Tensor:
        if self.hparams["penalty_scope"] == "batch" or domain is None:
            parts = [torch.arange(len(y), device=y.device)]
        else:
            parts = [(domain == d).nonzero().squeeze(1) for d in torch.unique(domain)]
        total = x.new_zeros(())
        for idx in parts:
            features = model.featurizer(torch.cat([x[idx], x_tilde[idx]]))
            total = total + gradient_statistics_gap(features, model.classifier(features), y[idx].repeat(2), len(idx))
        return total

    def train_step(self, model: nn.Module, batch: Batch, engine: StepEngine, state: State) -> dict:
        rho, lam = self.hparams["rho"], self.hparams["lam"]
        if state.step < int(self.hparams["warmup_frac"] * state.total_steps):
            return sam_step(model, batch.x, batch.y, engine, rho)
        x, y = batch.x, batch.y
        ce, grads, x_tilde = sharpness_gradients(model, x, y, rho, self.hparams["eta"], engine)
        params = trainable(model)
        saved = ascend(params, grads, rho)
        loss_perturbed = cross_entropy(model(x), y)
        engine.backward(loss_perturbed)
        restore(params, saved)
        # the penalty at θ; its gradient adds to the SAM gradient already in .grad
        penalty = self.penalty(model, x, x_tilde, y, batch.domain)
        engine.backward(lam * penalty)
        return {"loss": ce + lam * penalty.detach(), "ce": ce, "loss_perturbed": loss_perturbed.detach(),
                "penalty": penalty.detach()}
