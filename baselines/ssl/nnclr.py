"""NNCLR: contrastive learning whose positive is the nearest neighbour of a view in a support queue."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.functional import mlp_head
from harness.core.method import Method, State
from harness.core.registry import register_method
from harness.errors import HparamError


class SupportQueue:
    """A FIFO of the last ``size`` L2-normalised projections (float32, no gradient): NNCLR's support set Q.

    It starts empty and fills as batches are pushed; nearest neighbours are searched among the filled entries.
    """

    def __init__(self, size: int, dim: int, device: torch.device | str) -> None:
        self.bank = torch.zeros(size, dim, device=device)
        self.filled = 0
        self.ptr = 0

    def __len__(self) -> int:
        return self.filled

    @torch.no_grad()
    def push(self, z: Tensor) -> None:
        """Enqueue a batch (normalised here), overwriting the oldest entries; only the last ``size`` are kept."""
        z = F.normalize(z.detach().float(), dim=1)[-len(self.bank):]
        rows = (self.ptr + torch.arange(len(z), device=self.bank.device)) % len(self.bank)
        self.bank[rows] = z
        self.ptr = (self.ptr + len(z)) % len(self.bank)
        self.filled = min(len(self.bank), self.filled + len(z))

    @torch.no_grad()
    def nearest(self, z: Tensor) -> Tensor:
        """NN(z, Q): for each row of z, the queue entry of highest cosine similarity (a fixed tensor)."""
        support = self.bank[:self.filled]
        index = (F.normalize(z.detach().float(), dim=1) @ support.T).argmax(dim=1)
        return support[index].to(z.dtype)


def nnclr_contrastive(nn_z: Tensor, p: Tensor, tau: float) -> Tensor:
    """mean_i -log exp(NN_i . p_i / tau) / sum_k exp(NN_i . p_k / tau), NN and p L2-normalised.

    Row i holds the support neighbour of view 1 of image i; its positive is the prediction for view 2 of the same
    image, its negatives the predictions for the other images of the batch. The neighbours are a fixed target.
    """
    logits = F.normalize(nn_z.detach(), dim=1) @ F.normalize(p, dim=1).T / tau
    return F.cross_entropy(logits, torch.arange(len(p), device=p.device))


@register_method("nnclr")
class NNCLR(Method):
    """NNCLR (Dwibedi, Aytar, Tompson, Sermanet & Zisserman, "With a Little Help from My Friends: Nearest-Neighbor
    Contrastive Learning of Visual Representations", ICCV 2021).

    Encoder f, projector g, predictor h; a support queue Q of past projections. For each batch, two views v1, v2:

    1. z1 = g(f(v1)), z2 = g(f(v2)); p1 = h(z1), p2 = h(z2);
    2. NN1 = NN(z1, Q), NN2 = NN(z2, Q): each projection's nearest neighbour (cosine) in Q;
    3. loss = L(NN1, p2) / 2 + L(NN2, p1) / 2, L the InfoNCE of ``nnclr_contrastive`` with temperature ``tau``;
    4. after the update, enqueue z1 (``after_step``, so a skipped update leaves Q as it was).

    The neighbour replaces the other view as the positive: positives come from other images the network already
    finds similar. Heads as the paper: a three-layer projector (BN after every layer, the output included) and a
    Linear-BN-ReLU-Linear predictor; ``tau`` is the paper's 0.1. Scaled for CPU budgets: widths 512/128 (the
    paper's 2048/256 and a 4096-wide predictor), a queue of 1,024 (the paper's 98,304 for ImageNet) so that it
    holds recent projections of a small pretraining split (1,280 images in the standard profile). Deviation: the
    paper's queue starts full of random vectors; here it starts empty and the neighbours are searched among the
    entries pushed so far (on the first step, with none, the positive is the projection itself, a SimCLR step).
    The queue is per seed, made in ``build`` and kept on ``state`` (the pretrain protocol calls no ``setup``).
    """

    family = "ssl"
    protocols = frozenset({"pretrain"})
    hparams = dict(proj_hidden=512, proj_dim=128, pred_hidden=512, tau=0.1, queue_size=1024)

    def __init__(self, hparams: dict[str, Any] | None = None) -> None:
        super().__init__(hparams)
        h = self.hparams
        if min(h["proj_hidden"], h["proj_dim"], h["pred_hidden"]) < 1:
            raise HparamError(f"nnclr: proj_hidden, proj_dim and pred_hidden must be >= 1, got {h}")
        if h["tau"] <= 0:
            raise HparamError(f"hparam tau={h['tau']!r} for 'nnclr' must be > 0")
        if h["queue_size"] < 1:
            raise HparamError(f"hparam queue_size={h['queue_size']!r} for 'nnclr' must be >= 1")

    def build(self, encoder: nn.Module, feature_dim: int, state: State) -> list[nn.Module]:
        h = self.hparams
        projector = mlp_head([feature_dim, h["proj_hidden"], h["proj_hidden"], h["proj_dim"]]).append(
            nn.BatchNorm1d(h["proj_dim"]))
        state.online = nn.Sequential(encoder, projector).to(state.device)
        state.predictor = mlp_head([h["proj_dim"], h["pred_hidden"], h["proj_dim"]]).to(state.device)
        state.queue = SupportQueue(h["queue_size"], h["proj_dim"], state.device)
        return [state.online, state.predictor]

    def pretrain_loss(self, views: list[Tensor], state: State) -> Tensor:
        z = state.online(torch.cat(views))  # both views in one batch, so BatchNorm sees all 2N images
        p1, p2 = state.predictor(z).chunk(2)
        z1, z2 = z.chunk(2)
        queue: SupportQueue = state.queue
        # an empty queue (the first step) has no neighbours: each projection is its own positive
        nn1, nn2 = (queue.nearest(z1), queue.nearest(z2)) if len(queue) else (z1, z2)
        state.to_enqueue = z1.detach()  # pushed in after_step, once the update is applied
        tau = self.hparams["tau"]
        return nnclr_contrastive(nn1, p2, tau) / 2 + nnclr_contrastive(nn2, p1, tau) / 2

    def after_step(self, state: State) -> None:
        state.queue.push(state.to_enqueue)
