"""Focal loss: cross-entropy down-weighted on well-classified samples."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.core.functional import is_binary, signed_margin_targets
from harness.core.method import Batch, Method, State
from harness.core.registry import register_method
from harness.errors import HparamError


@register_method("focal")
class Focal(Method):
    """Focal loss -alpha_t (1 - p_t)^gamma log p_t (Lin et al., "Focal Loss for Dense Object Detection", 2017).

    Binary: sigmoid focal loss on the score f, with p_t = sigmoid(z), z = y~ f.
    K classes: softmax focal loss, p_t the softmax probability of the label.
    ``alpha`` (None = off) is the paper's alpha-balancing: weight alpha on the
    positive class and 1 - alpha on the negative; on K classes it is a uniform
    scale, since the paper defines it for the binary case only.
    """

    family = "loss"
    protocols = frozenset({"supervised"})
    hparams = dict(gamma=2.0, alpha=None)
    multiclass_note = "softmax focal loss on the label's probability; alpha, if set, is a uniform scale"

    def __init__(self, hparams: dict[str, Any] | None = None) -> None:
        super().__init__(hparams)
        alpha = self.hparams["alpha"]
        # alpha defaults to None, so resolve_hparams cannot type it; check it here
        numeric = isinstance(alpha, (int, float)) and not isinstance(alpha, bool)
        if alpha is not None and not (numeric and 0 <= alpha <= 1):
            raise HparamError(f"hparam alpha={alpha!r} for 'focal' must be None or a number in [0, 1]")
        if self.hparams["gamma"] < 0:
            raise HparamError(f"hparam gamma={self.hparams['gamma']!r} for 'focal' must be >= 0")

    def loss(self, logits: Tensor, batch: Batch, state: State) -> Tensor:
        gamma, alpha = self.hparams["gamma"], self.hparams["alpha"]
        if is_binary(logits):
            f, signs = signed_margin_targets(logits, batch.y)
            z = signs * f
            # -log p_t = softplus(-z) and (1 - p_t)^gamma = exp(gamma * logsigmoid(-z)): finite for any z
            per_sample = F.softplus(-z) * torch.exp(gamma * F.logsigmoid(-z))
            if alpha is not None:
                per_sample = torch.where(signs > 0, alpha, 1.0 - alpha).to(z.dtype) * per_sample
            return per_sample.mean()
        log_pt = F.log_softmax(logits, dim=1).gather(1, batch.y[:, None]).squeeze(1)
        # 1 - p_t via expm1 keeps precision near p_t = 1; the floor keeps pow's gradient finite for gamma < 1
        one_minus_pt = (-torch.expm1(log_pt)).clamp_min(torch.finfo(logits.dtype).tiny)
        per_sample = -(one_minus_pt**gamma) * log_pt
        if alpha is not None:
            per_sample = alpha * per_sample
        return per_sample.mean()
