"""MYOW: BYOL plus a second prediction task towards a mined view, a nearby other sample."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.functional import ema_momentum, ema_update, mlp_head, regression_loss
from harness.core.method import Method, State
from harness.core.registry import register_method


def mine_views(anchors: Tensor, pool: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """For each anchor, the pool index of one of its k nearest pool samples (cosine distance, chosen uniformly);
    anchor i and pool entry i are the same image and never pair."""
    dist = 2.0 - 2.0 * F.normalize(anchors, dim=1) @ F.normalize(pool, dim=1).T
    dist.fill_diagonal_(float("inf"))
    nearest = dist.topk(k, dim=1, largest=False).indices
    pick = torch.randint(k, (len(anchors),), generator=generator, device=generator.device).to(nearest.device)
    return nearest[torch.arange(len(anchors), device=nearest.device), pick]


@register_method("myow")
class MYOW(Method):
    """MYOW (Azabou et al., "Mine Your Own vieW: Self-Supervised Learning Through Across-Sample Prediction", 2021).

    BYOL's online network (encoder f, projector g, predictor q) and EMA target (f', g'), plus a cascaded second
    projector h (on g's output) with its own predictor q_m and EMA copy h'. Each step:

    1. the BYOL loss between the two views, averaged over both directions;
    2. mining: for every image, the online representation f(v1) picks among the other images of the batch one of
       its ``k`` nearest target representations f'(v2) (cosine distance);
    3. the mined loss regression_loss(q_m(h(g(f(v1)))), h'(g'(f'(v2_mined)))).

    The total is (byol + w * mined) / (1 + w); w is 0 for the first ``warmup_frac`` of the steps and then ramps
    linearly to ``max_weight`` at ``rampup_frac`` (MYOW's CIFAR script: 100 and 110 of 800 epochs). Deviations:
    candidates come from the same batch instead of a separate pool batch, and mining uses the step's ``ssl`` views
    rather than MYOW's weaker crop-and-flip views; widths are scaled down for CPU budgets.
    """

    family = "ssl"
    protocols = frozenset({"pretrain"})
    hparams = dict(proj_hidden=512, proj_dim=128, mined_hidden=256, mined_dim=64, base_momentum=0.99, k=1,
                   max_weight=1.0, warmup_frac=0.125, rampup_frac=0.1375)

    def build(self, encoder: nn.Module, feature_dim: int, state: State) -> list[nn.Module]:
        h = self.hparams
        state.online = nn.ModuleDict({
            "f": encoder,
            "g": mlp_head([feature_dim, h["proj_hidden"], h["proj_dim"]]),
            "h": mlp_head([h["proj_dim"], h["mined_hidden"], h["mined_dim"]]),
        }).to(state.device)
        state.predictor = mlp_head([h["proj_dim"], h["proj_hidden"], h["proj_dim"]]).to(state.device)
        state.predictor_m = mlp_head([h["mined_dim"], h["mined_hidden"], h["mined_dim"]]).to(state.device)
        state.teacher = copy.deepcopy(state.online).requires_grad_(False).train()
        return [state.online, state.predictor, state.predictor_m]

    def mined_weight(self, state: State) -> float:
        h = self.hparams
        start, end = h["warmup_frac"] * state.total_steps, h["rampup_frac"] * state.total_steps
        if state.step < start:
            return 0.0
        if state.step >= end:
            return h["max_weight"]
        return h["max_weight"] * (state.step - start) / (end - start)

    def pretrain_loss(self, views: list[Tensor], state: State) -> dict:
        online, teacher = state.online, state.teacher
        x = torch.cat(views)
        y = online["f"](x)
        z = online["g"](y)
        p1, p2 = state.predictor(z).chunk(2)
        with torch.no_grad():
            y_t = teacher["f"](x)
            z_t = teacher["g"](y_t)
        z1_t, z2_t = z_t.chunk(2)
        # 1. BYOL between the two views, both directions
        byol = (regression_loss(p1, z2_t) + regression_loss(p2, z1_t)) / 2
        w = self.mined_weight(state)
        loss = byol / (1.0 + w)
        if w > 0:
            # 2. mine: each image's view 1 picks a near neighbour among the other images' target view 2
            y1, _ = y.chunk(2)
            _, y2_t = y_t.chunk(2)
            mined = mine_views(y1.detach(), y2_t, self.hparams["k"], state.generator)
            # 3. predict the mined image's target projection h'(g'(f'(v2_mined)))
            with torch.no_grad():
                target = teacher["h"](z_t.chunk(2)[1][mined])
            prediction = state.predictor_m(online["h"](z.chunk(2)[0]))
            loss = loss + w / (1.0 + w) * regression_loss(prediction, target)
        return {"loss": loss, "mined_weight": w}

    def after_step(self, state: State) -> None:
        ema_update(state.teacher, state.online, ema_momentum(state, self.hparams["base_momentum"]))
