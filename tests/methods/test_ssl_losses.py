"""SSL losses: NT-Xent against its closed form, the temperature's effect on the gradient, and lightly's losses on
the same tensors (lightly is a test-only dependency)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from baselines.ssl.dino import dino_loss, updated_center
from baselines.ssl.random_teacher import distillation_loss
from baselines.ssl.simclr import nt_xent
from baselines.ssl.vicreg import vicreg_loss


def test_nt_xent_matches_its_closed_form_on_four_samples():
    # two images, two views each: views of an image coincide, the images are orthogonal. Every anchor has its
    # positive at cosine 1 and two negatives at cosine 0, so each term is -log(e^{1/t} / (e^{1/t} + 2)).
    e1 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    e2 = torch.tensor([0.0, 3.0, 0.0], dtype=torch.float64)  # the loss normalises: scale is free
    z1, z2 = torch.stack([e1, e2]), torch.stack([2 * e1, e2])
    for tau in (0.1, 0.5, 1.0):
        expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2))
        assert nt_xent(z1, z2, tau).item() == pytest.approx(expected, rel=1e-9)


def test_nt_xent_matches_the_per_anchor_sum_on_random_projections():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    u = F.normalize(torch.cat([z1, z2]), dim=1).double()
    tau, n = 0.3, 4
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        den = sum(math.exp(float(u[i] @ u[k]) / tau) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(float(u[i] @ u[pos]) / tau) / den)
    assert nt_xent(z1, z2, tau).item() == pytest.approx(total / (2 * n), rel=1e-5)


def _nearest_negative_share(tau: float) -> float:
    """Share of the hardest negative in the gradient norm over all negatives of anchor 0's loss term."""
    anchor = torch.tensor([1.0, 0.0, 0.0])
    negatives = [torch.tensor([0.8, 0.6, 0.0]), torch.tensor([0.0, 1.0, 0.0]), torch.tensor([-0.6, 0.0, 0.8])]
    positive = torch.tensor([0.9, 0.0, math.sqrt(1 - 0.81)])
    z1 = torch.stack([anchor, *negatives]).requires_grad_(True)
    z2 = torch.stack([positive, *negatives]).detach()
    n = len(z1)
    u = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = (u @ u.T / tau).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    F.cross_entropy(sim[:1], torch.tensor([n])).backward()  # anchor 0's term; its positive is row n
    norms = z1.grad[1:].norm(dim=1)  # the negatives in view 1 (their view-2 copies are detached)
    return float(norms[0] / norms.sum())


def test_small_tau_concentrates_the_gradient_on_the_nearest_negative():
    shares = [_nearest_negative_share(t) for t in (1.0, 0.5, 0.2, 0.05)]
    assert shares == sorted(shares), shares
    assert shares[0] < 0.6 and shares[-1] > 0.99, shares


def test_nt_xent_equals_lightly():
    from lightly.loss import NTXentLoss

    g = torch.Generator().manual_seed(1)
    for tau in (0.5, 0.1):
        z1, z2 = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
        ours, theirs = nt_xent(z1, z2, tau), NTXentLoss(temperature=tau)(z1, z2)
        assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_dino_loss_and_center_equal_lightly():
    from lightly.loss import DINOLoss

    g = torch.Generator().manual_seed(2)
    k = 32
    teacher = [torch.randn(8, k, generator=g) for _ in range(2)]
    student = [torch.randn(8, k, generator=g) for _ in range(2)]
    center = 0.1 * torch.randn(1, k, generator=g)
    theirs = DINOLoss(output_dim=k, warmup_teacher_temp=0.04, teacher_temp=0.04, warmup_teacher_temp_epochs=0,
                      student_temp=0.1, center_momentum=0.9)
    theirs.center.copy_(center.view(1, 1, k))
    expected = theirs(teacher, student)
    assert dino_loss(student, teacher, center, 0.1, 0.04).item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(updated_center(center, teacher, 0.9), theirs.center.view(1, k))


def test_vicreg_loss_equals_lightly():
    from lightly.loss import VICRegLoss

    g = torch.Generator().manual_seed(3)
    za, zb = torch.randn(16, 12, generator=g), 0.3 * torch.randn(16, 12, generator=g)
    expected = VICRegLoss(lambda_param=25.0, mu_param=25.0, nu_param=1.0)(za, zb)
    assert vicreg_loss(za, zb, 25.0, 25.0, 1.0).item() == pytest.approx(expected.item(), rel=1e-5)


def test_distillation_loss_is_zero_gradient_at_the_teacher():
    # student == teacher: CE(p, p) is at its minimum over the student, so the gradient vanishes; random-teacher
    # gets its signal from BatchNorm's train/eval difference (see RandomTeacher)
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(4))
    student = logits.clone().requires_grad_(True)
    distillation_loss(student, logits, 1.0).backward()
    assert student.grad.abs().max() < 1e-7
