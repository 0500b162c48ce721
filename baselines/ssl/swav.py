"""SwAV: predict one view's online cluster codes (Sinkhorn-Knopp over prototypes) from the other view."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.functional import mlp_head
from harness.core.method import Method, State
from harness.core.registry import register_method
from harness.errors import HparamError


@torch.no_grad()
def sinkhorn(scores: Tensor, epsilon: float = 0.05, iterations: int = 3) -> Tensor:
    """Soft codes Q (B x K) for B samples' prototype scores: Sinkhorn-Knopp on exp(scores / epsilon).

    Alternately scales the K prototype rows to equal mass 1/K and the B sample columns to mass 1/B (in float32),
    so the batch is spread evenly over the prototypes (the equipartition that prevents collapse); returns the
    codes scaled so that each sample's code sums to 1.
    """
    q = torch.exp(scores.detach().float() / epsilon).T  # K x B
    q /= q.sum()
    k, b = q.shape
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True) * k  # every prototype the same total mass
        q /= q.sum(dim=0, keepdim=True) * b  # every sample the same total mass
    return (q * b).T


def swapped_prediction(scores: list[Tensor], codes: list[Tensor], temperature: float) -> Tensor:
    """Mean over view pairs (s, t), s != t, of CE(codes_t, softmax(scores_s / temperature)), each averaged over
    the batch: every view predicts the codes computed from the other views. Codes are fixed targets."""
    logs = [F.log_softmax(s / temperature, dim=1) for s in scores]
    terms = [-(codes[t].detach() * logs[s]).sum(dim=1).mean()
             for t in range(len(codes)) for s in range(len(logs)) if s != t]
    return torch.stack(terms).mean()


@register_method("swav")
class SwAV(Method):
    """SwAV (Caron, Misra, Mairal, Goyal, Bojanowski & Joulin, "Unsupervised Learning of Visual Features by
    Contrasting Cluster Assignments", NeurIPS 2020).

    Encoder f, projector g (Linear-BN-ReLU-Linear), K trainable prototypes C (unit vectors). For each batch, two
    views v1, v2:

    1. z_t = normalize(g(f(v_t))); scores s_t = z_t C^T (cosine similarity to each prototype);
    2. codes q_t = Sinkhorn(s_t) without gradient: ``sinkhorn_iters`` Sinkhorn-Knopp iterations with
       regularisation ``epsilon``, which spread the batch evenly over the prototypes;
    3. loss = [CE(q2, softmax(s1 / tau)) + CE(q1, softmax(s2 / tau))] / 2 (``swapped_prediction``);
    4. the prototypes are renormalised to unit length after every update (``after_step``; the authors' code does it
       before every forward pass, the same sequence), and they receive no gradient for the first
       ``freeze_prototypes_frac`` of the steps.

    Defaults are the paper's: tau = 0.1, epsilon = 0.05, 3 iterations; the paper freezes the prototypes for its
    first epoch, here the first 1% of the steps (one epoch of a 100-epoch run). Scaled for CPU budgets: projector
    512 -> 128 (the paper's 2048 -> 128) and 512 prototypes (3000). Deviations: two views and no multi-crop, and no
    feature queue (the paper adds one for batches of 256 or less from epoch 15; the budgets here run a few dozen
    steps).
    """

    family = "ssl"
    protocols = frozenset({"pretrain"})
    hparams = dict(proj_hidden=512, proj_dim=128, num_prototypes=512, tau=0.1, epsilon=0.05, sinkhorn_iters=3,
                   freeze_prototypes_frac=0.01)

    def __init__(self, hparams: dict[str, Any] | None = None) -> None:
        super().__init__(hparams)
        h = self.hparams
        if min(h["proj_hidden"], h["proj_dim"], h["num_prototypes"], h["sinkhorn_iters"]) < 1:
            raise HparamError(f"swav: proj_hidden, proj_dim, num_prototypes and sinkhorn_iters must be >= 1, got {h}")
        if h["tau"] <= 0 or h["epsilon"] <= 0:
            raise HparamError(f"swav: tau={h['tau']!r} and epsilon={h['epsilon']!r} must be > 0")
        if not 0.0 <= h["freeze_prototypes_frac"] <= 1.0:
            raise HparamError(f"hparam freeze_prototypes_frac={h['freeze_prototypes_frac']!r} for 'swav' must lie "
                              "in [0, 1]")

    def build(self, encoder: nn.Module, feature_dim: int, state: State) -> list[nn.Module]:
        h = self.hparams
        projector = mlp_head([feature_dim, h["proj_hidden"], h["proj_dim"]])
        state.online = nn.Sequential(encoder, projector).to(state.device)
        state.prototypes = nn.Linear(h["proj_dim"], h["num_prototypes"], bias=False).to(state.device)
        self.normalize_prototypes(state)
        return [state.online, state.prototypes]

    @staticmethod
    @torch.no_grad()
    def normalize_prototypes(state: State) -> None:
        weight = state.prototypes.weight
        weight.copy_(F.normalize(weight, dim=1))

    def pretrain_loss(self, views: list[Tensor], state: State) -> Tensor:
        h = self.hparams
        z = F.normalize(state.online(torch.cat(views)), dim=1)
        prototypes = state.prototypes.weight
        if state.step < h["freeze_prototypes_frac"] * state.total_steps:
            prototypes = prototypes.detach()  # no gradient reaches C: the optimiser leaves it as it is
        scores = list((z @ prototypes.T).chunk(len(views)))
        codes = [sinkhorn(s, h["epsilon"], h["sinkhorn_iters"]) for s in scores]
        return swapped_prediction(scores, codes, h["tau"])

    def after_step(self, state: State) -> None:
        self.normalize_prototypes(state)
