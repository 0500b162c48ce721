"""Random teacher: distil a student into a frozen, randomly initialised teacher, with no augmentation."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.ssl.dino import DINOHead
from harness.core.method import Method, State
from harness.core.registry import register_method


def distillation_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """CE(softmax(t / T), log_softmax(s / T)) averaged over the batch; no centring, the teacher a fixed target."""
    target = F.softmax(teacher.detach() / temperature, dim=-1)
    return -(target * F.log_softmax(student / temperature, dim=-1)).sum(-1).mean()


@register_method("random-teacher")
class RandomTeacher(Method):
    """Random Teachers are Good Teachers (Sarnthein, Bachmann, Anagnostidis & Hofmann, ICML 2023).

    1. Teacher: encoder + DINOHead at random initialisation, frozen (never updated, kept in eval mode).
    2. Student: an exact copy of the teacher, encoder and head.
    3. One view per image, no augmentation (``augment="none"``).
    4. Loss: ``distillation_loss`` with temperature 1 for both, no centring; AdamW without weight decay.

    As in the paper's code (``t_eval``), the student runs in train mode and the teacher in eval mode, so BatchNorm
    normalises the student by batch statistics and the teacher by its initial running statistics: that
    difference is what moves the student off the teacher. The seed paper's finding is that the student's probe
    accuracy ends above the teacher's; the protocol probes the teacher (``frozen_initial_teacher``) and records
    the gain. The head is scaled down for CPU budgets (512-wide MLP, 128 bottleneck, 2048 outputs; the paper's
    is 2048, 256 and 65536).
    """

    family = "ssl"
    protocols = frozenset({"pretrain"})
    num_views = 1
    frozen_initial_teacher = True
    budget_overrides = {"augment": "none", "weight_decay": 0.0}
    hparams = dict(out_dim=2048, hidden=512, bottleneck=128, temperature=1.0)

    def build(self, encoder: nn.Module, feature_dim: int, state: State) -> list[nn.Module]:
        h = self.hparams
        head = DINOHead(feature_dim, h["out_dim"], h["hidden"], h["bottleneck"])
        state.student = nn.Sequential(encoder, head).to(state.device)
        state.teacher = copy.deepcopy(state.student).requires_grad_(False).eval()
        return [state.student]

    def pretrain_loss(self, views: list[Tensor], state: State) -> Tensor:
        (x,) = views
        with torch.no_grad():
            target = state.teacher(x)  # frozen, eval mode: never updated
        return distillation_loss(state.student(x), target, self.hparams["temperature"])
