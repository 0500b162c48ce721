"""Confidence-thresholded self-training on unlabeled target data."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from harness.core.engine import StepEngine
from harness.core.functional import cross_entropy, is_binary
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.errors import HarnessError


def confident_pseudo_labels(logits: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """The model's own hard labels and a mask of the samples whose top probability reaches ``threshold``."""
    logits = logits.detach()
    if is_binary(logits):
        p = torch.sigmoid(logits)
        return (p > 0.5).long(), torch.maximum(p, 1 - p) >= threshold
    confidence, labels = logits.softmax(1).max(1)
    return labels, confidence >= threshold


@register_method("pseudo-label")
class PseudoLabel(Method):
    """Pseudo-labelling (Lee, "Pseudo-Label", ICML-W 2013) with FixMatch's confidence threshold (Sohn et al., 2020).

    Each step labels the unlabeled target batch with the model's own argmax
    (no gradient through the labels), keeps the samples whose top probability
    is at least ``threshold``, and minimises
    CE(source) + ``weight`` · sum_{confident} CE(target, pseudo-label) / |target batch|
    (FixMatch's normalisation: by the whole unlabeled batch, so few confident
    samples give a small term). No pseudo-labels in the first ``warmup_frac`` of
    the steps, while the model is still guessing (Lee ramps the weight up for
    the same reason). Source and target share one forward pass.
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    uses_unlabeled = True
    needs_unlabeled = True
    hparams = dict(threshold=0.95, weight=1.0, warmup_frac=0.2)

    def train_step(self, model: nn.Module, batch: Batch, engine: StepEngine, state: State) -> dict:
        if batch.unlabeled_x is None:
            raise HarnessError("pseudo-label needs batch.unlabeled_x (target inputs); the task provides none")
        h, n = self.hparams, len(batch)
        logits = model(torch.cat([batch.x, batch.unlabeled_x]))
        supervised = cross_entropy(logits[:n], batch.y)
        labels, confident = confident_pseudo_labels(logits[n:], h["threshold"])
        per_sample = cross_entropy(logits[n:], labels, reduction="none")
        unsupervised = (per_sample * confident).sum() / len(per_sample)
        weight = h["weight"] if state.step >= int(h["warmup_frac"] * state.total_steps) else 0.0
        loss = supervised + weight * unsupervised
        return {"loss": loss, "supervised": supervised.detach(), "pseudo": unsupervised.detach(),
                "confident_frac": confident.float().mean()}
