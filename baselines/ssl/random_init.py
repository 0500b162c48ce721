"""The floor of the SSL suite: an encoder probed as initialised, with no pretraining."""

from __future__ import annotations

from torch import nn

from harness.core.method import Method, State
from harness.core.registry import register_method


@register_method("random-init")
class RandomInit(Method):
    """Random initialisation, no training: the floor every pretraining method must beat.

    ``build`` returns no module to optimise, so the protocol runs no step and probes the seed's initial encoder,
    the same weights every method starts from at that seed (and random-teacher's frozen teacher).
    """

    family = "ssl"
    protocols = frozenset({"pretrain"})
    num_views = 1
    hparams = {}

    def build(self, encoder: nn.Module, feature_dim: int, state: State) -> list[nn.Module]:
        return []
