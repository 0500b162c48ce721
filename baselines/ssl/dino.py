"""DINO: self-distillation with no labels, a centred and sharpened EMA teacher."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.functional import ema_momentum, ema_update, mlp_head
from harness.core.method import Method, State
from harness.core.registry import register_method


class DINOHead(nn.Module):
    """DINO's projection head: an MLP with GELU, a linear map to a bottleneck, L2 normalisation, then a
    weight-normalised linear layer without bias (each output unit's weight vector has norm 1, the gain fixed as in
    DINO's ``norm_last_layer``). Linear weights start from a truncated normal with std 0.02, biases at 0."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 512, bottleneck: int = 128, layers: int = 3) -> None:
        super().__init__()
        self.mlp = mlp_head([in_dim] + [hidden] * (layers - 1) + [bottleneck], batchnorm=False, act=nn.GELU)
        self.last = nn.Linear(bottleneck, out_dim, bias=False)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.mlp(x), dim=-1) @ F.normalize(self.last.weight, dim=1).T


def dino_loss(student: list[Tensor], teacher: list[Tensor], center: Tensor, student_temp: float,
              teacher_temp: float) -> Tensor:
    """Mean over view pairs (i, j), i != j, of CE(softmax((t_i - c) / teacher_temp), softmax(s_j / student_temp)),
    each averaged over the batch. The teacher side is a fixed target."""
    targets = [F.softmax((t.detach() - center) / teacher_temp, dim=-1) for t in teacher]
    logs = [F.log_softmax(s / student_temp, dim=-1) for s in student]
    terms = [-(targets[i] * logs[j]).sum(-1).mean()
             for i in range(len(targets)) for j in range(len(logs)) if i != j]
    return torch.stack(terms).mean()


@torch.no_grad()
def updated_center(center: Tensor, teacher: list[Tensor], momentum: float) -> Tensor:
    """c <- m c + (1 - m) (mean of the teacher outputs over views and batch)."""
    return center * momentum + torch.cat(teacher).mean(0, keepdim=True) * (1.0 - momentum)


@register_method("dino")
class DINO(Method):
    """DINO (Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021).

    Student: encoder + DINOHead; teacher: an EMA copy (momentum from ``base_momentum`` to 1, cosine). Both see
    both global views; the loss pairs each teacher view with the other student view (``dino_loss``), the teacher
    centred by an EMA of its mean output (``center_momentum``) and sharpened by ``teacher_temp``. Deviations for
    CPU budgets, all hparams: two global views and no local crops, a fixed teacher temperature (no 0.04 -> 0.07
    warm-up), an output of 1024 units instead of 65536, a 512-wide MLP, and no frozen last layer in epoch 1.
    """

    family = "ssl"
    protocols = frozenset({"pretrain"})
    hparams = dict(out_dim=1024, hidden=512, bottleneck=128, student_temp=0.1, teacher_temp=0.04,
                   center_momentum=0.9, base_momentum=0.99)

    def build(self, encoder: nn.Module, feature_dim: int, state: State) -> list[nn.Module]:
        h = self.hparams
        head = DINOHead(feature_dim, h["out_dim"], h["hidden"], h["bottleneck"])
        state.student = nn.Sequential(encoder, head).to(state.device)
        state.teacher = copy.deepcopy(state.student).requires_grad_(False).train()
        state.center = torch.zeros(1, h["out_dim"], device=state.device)
        return [state.student]

    def pretrain_loss(self, views: list[Tensor], state: State) -> Tensor:
        h = self.hparams
        x = torch.cat(views)
        student = list(state.student(x).chunk(len(views)))
        with torch.no_grad():
            state.teacher_out = list(state.teacher(x).chunk(len(views)))  # kept for the centre update
        return dino_loss(student, state.teacher_out, state.center, h["student_temp"], h["teacher_temp"])

    def after_step(self, state: State) -> None:
        h = self.hparams
        state.center = updated_center(state.center, state.teacher_out, h["center_momentum"])
        ema_update(state.teacher, state.student, ema_momentum(state, h["base_momentum"]))
