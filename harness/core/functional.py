"""Pure tensor helpers shared by method files.

Methods import from here, never from ``harness.protocols``: nothing in this module owns a loop, an optimizer
step, data movement or timing.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.errors import UsageError

# --- supervised: losses and heads shared by loss and DG methods ---

def is_binary(logits: Tensor) -> bool:
    return logits.ndim == 1


def cross_entropy(logits: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
    """CE for K-class logits, BCE-with-logits for binary scores: the ERM loss of either task."""
    if is_binary(logits):
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction=reduction)
    return F.cross_entropy(logits, y, reduction=reduction)


def signed_margin_targets(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Scores f and targets in {-1, +1}, for margin losses z = y~ * f.

    Binary: ``(f, 2y-1)`` of shape (N,). Multiclass: the one-vs-all extension,
    ``(logits, ±1 one-hot)`` of shape (N, K), each column a binary problem.
    """
    if is_binary(logits):
        return logits, 2.0 * y.to(logits.dtype) - 1.0
    signs = -torch.ones_like(logits)
    signs.scatter_(1, y[:, None], 1.0)
    return logits, signs


def set_output_bias(model: nn.Module, value: float) -> None:
    """Fill the bias of the model's output layer (the last ``nn.Linear`` of ``model.classifier``) with ``value``.

    One-vs-all losses use it to start each column at the best constant score for its 1:(K-1) class prior: from
    a zero bias every column first learns to push its logit down, and margin losses can settle on predicting one
    class.
    """
    head = [m for m in model.classifier.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        head.bias.fill_(value)


def group_means(values: Tensor, groups: Tensor, num_groups: int) -> tuple[Tensor, Tensor]:
    """Per-group means of ``values`` and a mask of the groups present in the batch."""
    sums = torch.zeros(num_groups, dtype=values.dtype, device=values.device).index_add(0, groups, values)
    counts = torch.bincount(groups, minlength=num_groups).to(values.dtype)
    present = counts > 0
    return sums / counts.clamp_min(1), present


def annealed_penalty_weight(state: Any, engine: Any, lam: float, anneal_frac: float, reset_optimizer: bool) -> float:
    """DomainBed's penalty schedule (IRM, VREx): weight 1 for the first ``anneal_frac`` of the steps, then ``lam``.

    With ``reset_optimizer`` the optimizer's state is cleared at the jump, as DomainBed rebuilds Adam:
    its moments were scaled for the small penalty.
    """
    anneal = int(anneal_frac * state.total_steps)
    if state.step == anneal and reset_optimizer:
        engine.reset_optimizer_state()
    return lam if state.step >= anneal else 1.0



# --- self-supervised ---
# Shared by the methods in baselines/ssl/ (and the pretrain protocol's default encoder): heads, the momentum
# teacher's rule and its schedule, BYOL's loss, a small conv encoder.


def mlp_head(dims: list[int], batchnorm: bool = True, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers through ``dims``; every hidden layer is followed by BatchNorm1d (optional) and ``act``."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers += [nn.BatchNorm1d(b)] if batchnorm else []
            layers.append(act())
    return nn.Sequential(*layers)


def ema_momentum(state: Any, base: float, final: float = 1.0) -> float:
    """BYOL's cosine schedule (also DINO's): m = final - (final - base) (cos(pi k / K) + 1) / 2 at step k of K.

    ``state`` needs only ``step`` (the updates applied so far) and ``total_steps``.
    """
    progress = min(1.0, state.step / max(1, state.total_steps))
    return final - (final - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- m teacher + (1 - m) student, parameter by parameter.

    Buffers are left alone: a teacher's BatchNorm statistics follow its own forward passes, as in BYOL's and
    DINO's code.
    """
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)


def regression_loss(p: Tensor, z: Tensor) -> Tensor:
    """BYOL's normalised MSE, 2 - 2 cos(p, z) per sample, averaged over the batch (z is a fixed target)."""
    return (2.0 - 2.0 * F.cosine_similarity(p, z.detach(), dim=-1)).mean()


def conv_encoder(in_chans: int, widths: list[int], strides: list[int]) -> nn.Sequential:
    """Conv3x3-BatchNorm-ReLU blocks, then global average pooling: a CPU-sized SSL encoder.

    BatchNorm, as in the ResNets the SSL papers use, and random-teacher depends on it: its student runs BatchNorm
    in train mode and its frozen teacher in eval mode, as in the paper's code (``t_eval``). Without such a
    difference student and teacher start equal and the distillation gradient is exactly zero.
    """
    if len(widths) != len(strides) or not widths:
        raise UsageError(f"conv_encoder needs one stride per width, got widths={widths}, strides={strides}")
    layers: list[nn.Module] = []
    cin = in_chans
    for width, stride in zip(widths, strides):
        layers += [nn.Conv2d(cin, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        cin = width
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    net.feature_dim = cin
    return net


# --- unlearning ---


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen copy in eval mode: the teacher of SCRUB and LAF."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def distill_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """KL(softmax(t/T) || softmax(s/T)) T², batch mean (Hinton's distillation term)."""
    log_s = F.log_softmax(student / temperature, dim=1)
    log_t = F.log_softmax(teacher / temperature, dim=1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean") * temperature**2


def wrong_labels(y: Tensor, num_classes: int, generator: torch.Generator) -> Tensor:
    """A uniformly drawn label other than the true one, per sample."""
    shift = torch.randint(1, num_classes, y.shape, generator=generator, device=y.device)
    return (y + shift) % num_classes


def l1_norm(params: list[Tensor]) -> Tensor:
    """‖θ‖₁ over a list of tensors."""
    return torch.stack([p.abs().sum() for p in params]).sum()


def top_fraction_mask(scores: list[Tensor], keep: float) -> list[Tensor]:
    """Boolean masks (shaped like ``scores``) keeping exactly ``round(keep * n)`` of all n entries: the largest,
    ranked over all tensors together (ties broken arbitrarily)."""
    flat = torch.cat([s.flatten() for s in scores])
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[torch.topk(flat, round(keep * flat.numel()), sorted=False).indices] = True
    return [m.view_as(s) for m, s in zip(torch.split(chosen, [s.numel() for s in scores]), scores)]
