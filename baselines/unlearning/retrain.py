"""Retraining from scratch without the forget set: exact unlearning, the reference every method is measured against."""

from __future__ import annotations

from torch import nn

from harness.core.method import Method, State
from harness.core.registry import register_method


@register_method("retrain")
class Retrain(Method):
    """Retrain on the retain set only (the "gold standard" of every unlearning paper, e.g. Jia et al. 2023).

    ``state.retrain()`` hands over the method's own retrained model (method oracle 0: the same recipe as the scoring
    oracles, from its own seed, cached and shared across methods' runs) and charges its training time, so RTE is
    about 1. Its gap and KLoM are therefore the floor set by retraining noise (a retraining against the scoring
    oracles it never saw), not 0 by construction.
    """

    family = "unlearning"
    protocols = frozenset({"unlearn"})
    hparams = {}
    uses_oracles = True

    def unlearn(self, model: nn.Module, forget, retain, state: State) -> nn.Module:
        return state.retrain()
