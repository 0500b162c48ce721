"""Domain-adversarial training with unlabeled target data."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.engine import StepEngine
from harness.core.functional import cross_entropy
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.core.search import LogUniform
from harness.errors import HarnessError


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.scale * grad, None


def reverse_gradient(x: Tensor, scale: float) -> Tensor:
    """Identity forward; the gradient flowing back is multiplied by -scale (Ganin's gradient reversal layer)."""
    return _ReverseGrad.apply(x, scale)


def adaptation_weight(progress: float, gamma: float = 10.0) -> float:
    """Ganin et al.'s schedule 2 / (1 + exp(-gamma p)) - 1: 0 at the start, near 1 by the end of training."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


@register_method("dann")
class DANN(Method):
    """DANN (Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016), unsupervised adaptation.

    A domain discriminator D (an MLP on ``model.featurizer`` features) learns
    to tell the labelled source batch (0) from the unlabeled target batch (1);
    the gradient it sends into the featurizer passes a gradient-reversal layer
    with weight λ_p = ``lam`` · (2 / (1 + exp(-10 p)) - 1), p the fraction of
    training done. One step minimises CE(source) + BCE(D), so D descends its
    loss while the featurizer ascends it: features that the discriminator
    cannot separate across the shift. D is attached to the model by
    :meth:`init_model`, so the protocol's optimizer and schedule train it too.
    Source and target pass the featurizer together (one batch-norm batch).

    This is the domain-adaptation DANN, with the held-out domain's unlabeled
    split as target (WILDS 2.0); DomainBed's DANN instead separates the
    training domains from each other.
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    uses_unlabeled = True
    needs_unlabeled = True
    hparams = dict(lam=1.0, gamma=10.0, disc_width=256)
    search_space = dict(lam=LogUniform(1e-2, 1e2), disc_width=LogUniform(2**6, 2**10, integer=True))

    def init_model(self, model: nn.Module, task: Any) -> None:
        width = self.hparams["disc_width"]
        model.dann_discriminator = nn.Sequential(
            nn.Linear(model.n_features, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1),
        ).to(next(model.parameters()).device)

    def train_step(self, model: nn.Module, batch: Batch, engine: StepEngine, state: State) -> dict:
        if batch.unlabeled_x is None:
            raise HarnessError("dann needs batch.unlabeled_x (target inputs); the task provides no unlabeled split")
        n = len(batch)
        features = model.featurizer(torch.cat([batch.x, batch.unlabeled_x]))
        task_loss = cross_entropy(model.classifier(features[:n]), batch.y)
        weight = self.hparams["lam"] * adaptation_weight(state.step / max(1, state.total_steps), self.hparams["gamma"])
        domain_logits = model.dann_discriminator(reverse_gradient(features, weight)).squeeze(1)
        is_target = torch.cat([torch.zeros(n), torch.ones(len(features) - n)]).to(domain_logits)
        domain_loss = F.binary_cross_entropy_with_logits(domain_logits, is_target)
        loss = task_loss + domain_loss
        return {"loss": loss, "task_loss": task_loss.detach(), "domain_loss": domain_loss.detach(),
                "reversal_weight": torch.tensor(weight)}
