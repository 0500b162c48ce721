"""The "good closed-set classifier" recipe: ERM with label smoothing, RandAugment and a longer cosine schedule."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.errors import HparamError, Unsupported


@register_method("erm-strong")
class ERMStrong(Method):
    """ERM trained the way Vaze et al. ("Open-Set Recognition: a Good Closed-Set Classifier is All You Need?",
    ICLR 2022, Sec. 4) train their strong baseline: cross-entropy with label smoothing, RandAugment (the
    ``randaugment`` policy, n = 1, m = 9, then crop and flip) and a cosine learning-rate schedule with a linear
    warm-up, run twice as many epochs as the case's budget. The paper's schedule is also far longer in absolute
    terms (hundreds of epochs with restarts); the factor of two is what a CPU budget affords.

    A closed-set trainer for the open-set protocol: its row is its model scored with MLS (and MSP alongside), and
    the scores take it with ``--hparam trainer=erm-strong``.
    """

    family = "osr"
    protocols = frozenset({"openset"})
    hparams = dict(label_smoothing=0.1)
    budget_overrides = dict(augment="randaugment", schedule="cosine", warmup_epochs=1.0, epochs_factor=2.0)

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if not 0 <= self.hparams["label_smoothing"] < 1:
            raise HparamError(f"hparam label_smoothing={self.hparams['label_smoothing']!r} for 'erm-strong' must "
                              "be in [0, 1)")

    def check_task(self, task) -> None:
        super().check_task(task)
        if task.image_size is None:  # RandAugment and crops act on pixels; a frozen-feature case has none
            raise Unsupported(f"erm-strong augments images, and {task.suite}/{task.case} trains a head on frozen "
                              "features (no pixels to augment)")

    def loss(self, logits: Tensor, batch: Batch, state: State) -> Tensor:
        return F.cross_entropy(logits, batch.y, label_smoothing=self.hparams["label_smoothing"])
