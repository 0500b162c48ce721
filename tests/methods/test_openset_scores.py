"""The open-set scores of baselines/osr: each against a value worked out by hand on fixed logits or features, and
knn, mahalanobis, energy and vim against independent implementations (sklearn, pytorch-ood)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from harness.core.registry import create_method
from harness.errors import HparamError
from harness.metrics.openset import auroc
from harness.protocols.kit import Outputs

LOGITS = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, -1.0]])


def outputs(features: torch.Tensor, y: torch.Tensor, logits: torch.Tensor | None = None) -> Outputs:
    logits = torch.zeros(len(y), int(y.max()) + 1) if logits is None else logits
    return Outputs(logits, y, None, None, features, torch.arange(len(y)))


def state(num_classes: int, **extra) -> SimpleNamespace:
    return SimpleNamespace(num_classes=num_classes, **extra)


def test_msp_mls_energy_by_hand():
    e2 = math.exp(2)
    msp = create_method("msp").score(LOGITS)
    assert msp.tolist() == pytest.approx([e2 / (e2 + 2), math.e / (2 * math.e + math.exp(-1))])
    assert create_method("mls").score(LOGITS).tolist() == [2.0, 1.0]
    energy = create_method("energy").score(LOGITS)
    assert energy.tolist() == pytest.approx([math.log(e2 + 2), math.log(2 * math.e + math.exp(-1))])
    hot = create_method("energy", {"temperature": 2.0}).score(LOGITS)
    assert hot[0].item() == pytest.approx(2 * math.log(math.e + 2))


def test_mahalanobis_by_hand():
    # class 0 at (0,0), (2,0): mean (1,0); class 1 at (0,2), (0,4): mean (0,3); the shared covariance is
    # diag(2, 2) / 4 = diag(0.5, 0.5), so the precision is diag(2, 2).
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    m = create_method("mahalanobis")
    m.calibrate(None, outputs(z, torch.tensor([0, 0, 1, 1])), state(2))
    # (1,1): 2 * (0^2 + 1^2) = 2 to class 0, 2 * (1^2 + 2^2) = 10 to class 1; (0,3) sits on class 1's mean
    assert m.score(None, torch.tensor([[1.0, 1.0], [0.0, 3.0]])).tolist() == pytest.approx([-2.0, 0.0])


def test_knn_by_hand():
    bank = torch.tensor([[1.0, 0.0], [0.0, 3.0], [-2.0, 0.0]])  # normalised: (1,0), (0,1), (-1,0)
    m = create_method("knn", {"k": 2})
    m.calibrate(None, outputs(bank, torch.tensor([0, 1, 2])), state(3))
    # (5,5) normalised is (1,1)/sqrt2: distances sqrt(2 - sqrt2) to (1,0) and (0,1), sqrt(2 + sqrt2) to (-1,0)
    assert m.score(None, torch.tensor([[5.0, 5.0]])).item() == pytest.approx(-math.sqrt(2 - math.sqrt(2)))
    assert create_method("knn", {"k": 50}).hparams["k"] == 50
    big = create_method("knn", {"k": 50})
    big.calibrate(None, outputs(bank, torch.tensor([0, 1, 2])), state(3))  # k capped at the bank size
    assert big.score(None, torch.tensor([[5.0, 5.0]])).item() == pytest.approx(-math.sqrt(2 + math.sqrt(2)))
    with pytest.raises(HparamError):
        create_method("knn", {"k": 0})


def test_vim_by_hand():
    # W = [[1,0,0],[0,1,0]], b = 0: origin 0. Training features have E[x^2] = E[y^2] = 2, E[z^2] = 1 and no cross
    # terms, so the 2-d principal subspace is (x, y) and the residual is |z|. Every max logit is 2 and every
    # residual 1, so alpha = 2. For (1, 0, 0.5): logits (1, 0), score = log(e + 1) - 2 * 0.5.
    head = nn.Linear(3, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
        head.bias.zero_()
    model = SimpleNamespace(classifier=head)
    z = torch.tensor([[2.0, 0, 1], [0, 2.0, -1], [2.0, 0, -1], [0, 2.0, 1]])
    m = create_method("vim", {"dim": 2})
    m.calibrate(model, outputs(z, torch.tensor([0, 1, 0, 1]), head(z).detach()), state(2))
    assert m.alpha == pytest.approx(2.0)
    x = torch.tensor([[1.0, 0, 0.5]])
    assert m.score(head(x).detach(), x).item() == pytest.approx(math.log(math.e + 1) - 1.0)


def test_odin_by_hand():
    # f(x) = W x with W = [[1,0],[0,1],[-1,-1]] and x = (2,1): f = (2,1,-3), y_hat = 0. The gradient of
    # CE(f/T, 0) is W^T (p - e_0) / T = (p0 - 1 - p2, p1 - p2) / T, signs (-1, +1), so
    # x~ = x - eps * sign / std = (2 + eps/std0, 1 - eps/std1).
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 3, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0], [0, 1.0], [-1.0, -1.0]]))
    t, eps, std = 10.0, 0.1, (0.5, 0.25)
    m = create_method("odin", {"temperature": t, "epsilon": eps})
    got = m.score_inputs(model, torch.tensor([2.0, 1.0]).view(1, 2, 1, 1), state(3, input_std=std)).item()
    x0, x1 = 2 + eps / std[0], 1 - eps / std[1]
    f = [x0, x1, -x0 - x1]
    expected = math.exp(f[0] / t) / sum(math.exp(v / t) for v in f)
    assert got == pytest.approx(expected, rel=1e-6)


def test_scores_are_invariant_to_argument_they_do_not_use():
    feats = torch.randn(2, 4)
    for name in ("msp", "mls", "energy"):
        method = create_method(name)
        assert torch.equal(method.score(LOGITS, feats), method.score(LOGITS, None))


def _gaussian_features(seed: int = 0, n: int = 600, d: int = 8, classes: int = 3):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    centres = torch.randn(classes, d, generator=g) * 3
    z = centres[y] + torch.randn(n, d, generator=g)
    test = torch.randn(200, d, generator=g) * 3
    return z, y, test


def test_knn_matches_sklearn_nearest_neighbors():
    from sklearn.neighbors import NearestNeighbors

    z, y, test = _gaussian_features()
    m = create_method("knn", {"k": 7})
    m.calibrate(None, outputs(z, y), state(3))
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True))  # noqa: E731
    dist, _ = NearestNeighbors(n_neighbors=7).fit(unit(z.numpy())).kneighbors(unit(test.numpy()))
    np.testing.assert_allclose(-m.score(None, test).numpy(), dist[:, -1], rtol=1e-5, atol=1e-6)


def test_mahalanobis_matches_pytorch_ood():
    from pytorch_ood.detector import Mahalanobis as Reference

    z, y, test = _gaussian_features()
    m = create_method("mahalanobis")
    m.calibrate(None, outputs(z, y), state(3))
    ours = m.score(None, test)
    ref = Reference(None).fit_features(z, y).predict_features(test)  # outlier score: d^2 / 2 under the summed cov
    # pytorch-ood's covariance is the sum of the centred outer products (ours divides by N), so its squared
    # distances are ours / N, halved: -ours = 2 N ref
    np.testing.assert_allclose(-ours.numpy(), 2 * len(z) * ref.double().numpy(), rtol=1e-4)


def test_energy_and_vim_match_pytorch_ood():
    from pytorch_ood.detector import ViM as RefViM
    from pytorch_ood.detector.energy import EnergyBased

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(50, 5, generator=g) * 4
    for t in (1.0, 3.0):
        ours = create_method("energy", {"temperature": t}).score(logits)
        torch.testing.assert_close(ours, -EnergyBased.score(logits, t=t))
    z, y, test = _gaussian_features(d=12)
    head = nn.Linear(12, 3)
    m = create_method("vim", {"dim": 4})
    m.calibrate(SimpleNamespace(classifier=head), outputs(z, y, head(z).detach()), state(3))
    ref = RefViM(None, d=4, w=head.weight, b=head.bias).fit_features(z, y)
    ours = m.score(head(test).detach(), test)
    np.testing.assert_allclose(-ours.numpy(), ref.predict_features(test).double().numpy(), rtol=1e-4, atol=1e-4)


def test_scores_separate_known_from_unknown_features():
    """On well-separated classes every feature score ranks points far from all training classes below known ones."""
    z, y, _ = _gaussian_features(seed=2)
    head = nn.Linear(8, 3)
    known, unknown = z[:100] + 0.1, torch.randn(100, 8) * 0.5 + 20
    for name in ("mahalanobis", "knn"):
        m = create_method(name)
        m.calibrate(SimpleNamespace(classifier=head), outputs(z, y, head(z).detach()), state(3))
        assert auroc(m.score(None, known).numpy(), m.score(None, unknown).numpy()) > 0.99, name


def test_bad_hparams_are_clear_errors():
    for name, hp in (("energy", {"temperature": 0.0}), ("odin", {"epsilon": -1.0}), ("vim", {"dim": -1}),
                     ("erm-strong", {"label_smoothing": 1.0})):
        with pytest.raises(HparamError):
            create_method(name, hp)
