"""Retraining from scratch without the forget set: exact unlearning, the reference every method is measured against."""

from __future__ import annotations

from torch import nn

from harness.method import Method, State
from harness.registry import register_method


@register_method("retrain")
class Retrain(Method):
    """Retrain on the retain set only (the "gold standard" of every unlearning paper, e.g. Jia et al. 2023).

    The protocol already trains this model once per case and seed (oracle 0, shared by every method), so this returns
    it, charged the time that training took: the gap to retrain is 0 by construction and RTE is 1. Its KLoM is the
    floor set by retraining noise (oracle 0 against the other oracles).
    """

    family = "unlearning"
    protocols = frozenset({"unlearn"})
    hparams = {}
    uses_oracles = True

    def unlearn(self, model: nn.Module, forget, retain, state: State) -> nn.Module:
        return state.retrain()
