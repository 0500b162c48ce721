"""Relation: the summed strength of a sample's edges to the training set in a feature-and-posterior relation graph."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.method import Method, State
from harness.core.registry import register_method
from harness.errors import HparamError

BLOCK = 1 << 22  # relations per block (test rows x training rows), to bound memory


@register_method("relation")
class Relation(Method):
    """Relation (Kim, Yun & Song, "Neural Relation Graph: A Unified Framework for Identifying Label Noise and Outlier
    Data", NeurIPS 2023), on penultimate features z and posteriors p = softmax(f), over all training samples i:

    1. Edge r_i(x) = max(z^(x) . z^_i, 0) * (p(x) . p_i), with z^ = z / ||z||: feature similarity times posterior
       agreement.
    2. Edges with r_i(x) <= tau are cut (tau = 0.03, the reference code's fixed cut-off).
    3. S(x) = sum_{i: r_i(x) > tau} r_i(x)^pow: known samples have many strong edges to the training graph.

    pow = 1 (``power``) is OpenOOD's default (it tunes it over 1-8 on validation data); ``threshold`` = tau.
    Scores the closed-set model that ``trainer`` trains (default erm).
    """

    family = "osr"
    protocols = frozenset({"openset"})
    hparams = dict(trainer="erm", power=1.0, threshold=0.03)

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if self.hparams["power"] <= 0 or self.hparams["threshold"] < 0:
            raise HparamError(f"relation needs power > 0 and threshold >= 0, got power={self.hparams['power']!r}, "
                              f"threshold={self.hparams['threshold']!r}")

    def calibrate(self, model: nn.Module, train, state: State) -> None:
        self.bank_z = F.normalize(train.features.float(), dim=1)
        self.bank_p = train.logits.float().softmax(dim=1)

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        z, p = F.normalize(features.float(), dim=1), logits.float().softmax(dim=1)
        chunk = max(1, BLOCK // len(self.bank_z))
        out = []
        for zs, ps in zip(z.split(chunk), p.split(chunk)):
            r = (zs @ self.bank_z.T).clamp(min=0) * (ps @ self.bank_p.T)
            out.append(torch.where(r > self.hparams["threshold"], r.pow(self.hparams["power"]), 0.0).sum(dim=1))
        return torch.cat(out)
