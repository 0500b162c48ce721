"""The post-hoc open-set scores added from OpenOOD v1.5's strongest families (gen, react, ash, dice, scale, she, rmds,
klm, gradnorm, temp-scaling, fdbd, nnguide, relation, residual): each against a value worked out by hand or by an
explicit loop on a tiny example (5 samples, 3 classes, 4 features), gradnorm against autograd, most against
pytorch-ood's independent implementations, and all for direction, registration, hparam and head checks."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from harness.core import registry
from harness.core.registry import create_method, method_names
from harness.errors import HarnessError, HparamError
from harness.protocols.kit import Outputs

NEW = ("gen", "react", "ash", "dice", "scale", "she", "rmds", "klm", "gradnorm", "temp-scaling", "fdbd", "nnguide",
       "relation", "residual")

# The tiny example: logits f = W z + b on 4 non-negative (post-ReLU) features, 3 classes.
W = [[1.0, 0.0, -1.0, 0.5], [0.0, 2.0, 0.0, -0.5], [-1.0, 0.0, 1.0, 0.0]]
B = [0.1, -0.2, 0.0]
Z = [[2.0, 0.0, 1.0, 0.0], [0.0, 3.0, 0.0, 1.0], [1.0, 0.0, 2.0, 0.0], [3.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 2.0]]
Y = [0, 1, 2, 0, 2]  # the model classifies every one of them correctly (checked in test_tiny_example)


class Tiny(nn.Module):
    """The harness's model shape: model(x) == classifier(featurizer(x)); here the features are the inputs."""

    def __init__(self, w: list | torch.Tensor = W, b: list | torch.Tensor = B) -> None:
        super().__init__()
        w = torch.as_tensor(w, dtype=torch.float32)
        self.featurizer = nn.Identity()
        self.classifier = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.classifier.weight.copy_(w)
            self.classifier.bias.copy_(torch.as_tensor(b, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.featurizer(x))


MODEL = Tiny()


def logits_of(z: list | torch.Tensor, model: nn.Module = MODEL) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.as_tensor(z, dtype=torch.float32))


def train_outputs(z: list | torch.Tensor = Z, y: list | torch.Tensor = Y, model: nn.Module = MODEL) -> Outputs:
    z = torch.as_tensor(z, dtype=torch.float32)
    return Outputs(logits_of(z, model), torch.as_tensor(y), None, None, z, torch.arange(len(z)))


def state(num_classes: int = 3) -> SimpleNamespace:
    return SimpleNamespace(num_classes=num_classes)


def calibrated(name: str, hp: dict | None = None, train: Outputs | None = None, model: nn.Module = MODEL):
    m = create_method(name, hp)
    m.calibrate(model, train or train_outputs(), state(train.logits.shape[1] if train else 3))
    return m


def score(m, z: list) -> list[float]:
    z = torch.as_tensor(z, dtype=torch.float32)
    return m.score(logits_of(z), z).tolist()


# -- plain-Python references -------------------------------------------------------------------------------


def lin(z: list[float], w: list = W, b: list = B) -> list[float]:
    return [sum(wk[j] * z[j] for j in range(len(z))) + bk for wk, bk in zip(w, b)]


def lse(v: list[float]) -> float:
    top = max(v)
    return top + math.log(sum(math.exp(x - top) for x in v))


def softmax(v: list[float]) -> list[float]:
    e = [math.exp(x - max(v)) for x in v]
    return [x / sum(e) for x in e]


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def unit(a: list[float]) -> list[float]:
    n = math.sqrt(dot(a, a))
    return [x / n for x in a]


def close(got: torch.Tensor | list, expected: list, rtol: float = 1e-9, atol: float = 1e-9) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64), rtol=rtol,
                               atol=atol)


# -- the example itself --------------------------------------------------------------------------------------


def test_tiny_example():
    # z0: f = (1.1, -0.2, -1); z1: (0.6, 5.3, 0); z2: (-0.9, -0.2, 1); z3: (3.1, 1.8, -3); z4: (0.1, -1.2, 1)
    expected = [[1.1, -0.2, -1.0], [0.6, 5.3, 0.0], [-0.9, -0.2, 1.0], [3.1, 1.8, -3.0], [0.1, -1.2, 1.0]]
    close(logits_of(Z), expected, atol=1e-6)
    close([lin(z) for z in Z], expected)
    assert logits_of(Z).argmax(1).tolist() == Y


# -- each score by hand --------------------------------------------------------------------------------------


def test_gen_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, -1.0]])
    for gamma, m in ((0.1, 100), (0.5, 2), (2.0, 1)):
        got = create_method("gen", {"gamma": gamma, "m": m}).score(logits).tolist()
        expected = []
        for row in logits.tolist():
            top = sorted(softmax(row), reverse=True)[:m]
            expected.append(-sum(p ** gamma * (1 - p) ** gamma for p in top))
        assert got == pytest.approx(expected, rel=1e-12), (gamma, m)
    # one class at p = 1/3 each: 3 (1/3 * 2/3)^gamma; gamma = 1 gives 3 * 2/9 = 2/3
    flat = create_method("gen", {"gamma": 1.0}).score(torch.zeros(1, 3)).item()
    assert flat == pytest.approx(-2 / 3)


def test_react_by_hand():
    # The 20 training activations sorted: ten 0s, five 1s, three 2s, two 3s. numpy's linear percentile: the 90th
    # sits at rank 0.9 * 19 = 17.1, between 2 and 3, so c = 2.1; the 50th at rank 9.5, between 0 and 1: c = 0.5.
    for percentile, c in ((90.0, 2.1), (50.0, 0.5)):
        m = calibrated("react", {"percentile": percentile})
        assert m.threshold == pytest.approx(c)
        x = [3.0, 0.5, 2.5, 1.0]
        clipped = [min(v, c) for v in x]
        assert score(m, [x]) == pytest.approx([lse(lin(clipped))])
    assert calibrated("react", {"percentile": 100.0}).threshold == 3.0  # the largest activation: clips nothing seen


def test_ash_by_hand():
    # x = (4, 1, 3, 0), percentile 50: k = 4 - round(2) = 2 kept (4 and 3); s1 = 8, s2 = 7
    x = [4.0, 1.0, 3.0, 0.0]
    shaped = {"p": [4.0, 0.0, 3.0, 0.0], "b": [4.0, 0.0, 4.0, 0.0],
              "s": [4 * math.exp(8 / 7), 0.0, 3 * math.exp(8 / 7), 0.0]}
    for variant, a in shaped.items():
        m = calibrated("ash", {"percentile": 50.0, "variant": variant})
        assert m.shape(torch.tensor([x]))[0].tolist() == pytest.approx(a), variant
        assert score(m, [x]) == pytest.approx([lse(lin(a))]), variant
    # the default p = 90: 4 - round(3.6) = 0, floored at one kept activation; ASH-S: s1 / s2 = 8 / 4
    m = calibrated("ash")
    assert m.shape(torch.tensor([x]))[0].tolist() == pytest.approx([4 * math.exp(2), 0, 0, 0])
    # an all-zero sample has nothing to scale and stays finite
    assert m.shape(torch.zeros(1, 4)).tolist() == [[0.0] * 4]
    assert score(m, [[0.0] * 4]) == pytest.approx([lse(B)])


def test_scale_by_hand():
    # percentile 50: the top 2 (4 and 3) sum to s2 = 7 and s1 = 8, but nothing is pruned: x * exp(8/7)
    x = [4.0, 1.0, 3.0, 0.0]
    m = calibrated("scale", {"percentile": 50.0})
    a = [v * math.exp(8 / 7) for v in x]
    assert m.scaled(torch.tensor([x]))[0].tolist() == pytest.approx(a)
    assert score(m, [x]) == pytest.approx([lse(lin(a))])
    # default p = 85: 4 - round(3.4) = 1 kept, s2 = 4, r = 2
    m = calibrated("scale")
    assert score(m, [x]) == pytest.approx([lse(lin([v * math.exp(2) for v in x]))])
    assert score(m, [[0.0] * 4]) == pytest.approx([lse(B)])


def test_dice_by_hand():
    # mean training feature (1.2, 0.8, 0.8, 0.6); contributions W * mean:
    #   ( 1.2, 0,   -0.8,  0.3)
    #   ( 0,   1.6,  0,   -0.3)
    #   (-1.2, 0,    0.8,  0  )
    # sorted: -1.2 -0.8 -0.3 0 0 0 0 0 0.3 0.8 1.2 1.6. The 75th percentile sits at rank 8.25: 0.3 + 0.25 * 0.5 =
    # 0.425, so 1.2, 1.6 and 0.8 survive; the 90th at rank 9.9: 0.8 + 0.9 * 0.4 = 1.16, so 1.2 and 1.6 survive.
    kept = {75.0: [[1.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 1.0, 0]],
            90.0: [[1.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 0]]}
    x = [1.0, 2.0, 3.0, 4.0]
    for percentile, w in kept.items():
        m = calibrated("dice", {"percentile": percentile})
        close(m.weight, w)
        assert score(m, [x]) == pytest.approx([lse(lin(x, w))]), percentile
    assert create_method("dice").hparams["percentile"] == 90.0


def test_she_by_hand():
    # Labels (0, 2, 1, 0, 2) against predictions (0, 1, 2, 0, 2): samples 1 and 2 are misclassified. Patterns:
    # class 0 = mean(z0, z3) = (2.5, 0.5, 0.5, 0); class 2 = z4 (the one correct), class 1 has no correct sample and
    # falls back to its labelled sample z2 = (1, 0, 2, 0).
    m = calibrated("she", train=train_outputs(y=[0, 2, 1, 0, 2]))
    close(m.patterns, [[2.5, 0.5, 0.5, 0.0], [1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 1.0, 2.0]])
    # x = (1, 1, 1, 1): f = (0.6, 1.3, 0), predicted 1: x . (1, 0, 2, 0) = 3; x = (2, 0, 0, 0): f = (2.1, -0.2, -2),
    # predicted 0: 2 * 2.5 = 5
    assert score(m, [[1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 0.0, 0.0]]) == pytest.approx([3.0, 5.0])
    # all correct: class 1's pattern is z1
    assert calibrated("she").patterns[1].tolist() == Z[1]


def test_rmds_by_hand():
    # 2-d: class 0 at (0,0), (2,0), class 1 at (0,2), (0,4): shared class covariance diag(0.5, 0.5), precision
    # diag(2, 2). Background: mean (0.5, 1.5), covariance [[0.75, -0.75], [-0.75, 2.75]] (det 1.5), precision
    # [[2.75, 0.75], [0.75, 0.75]] / 1.5.
    z = [[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 4.0]]
    model = Tiny([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    m = calibrated("rmds", train=train_outputs(z, [0, 0, 1, 1], model), model=model)
    assert m.background_mean.tolist() == pytest.approx([0.5, 1.5])
    close(m.background_precision, [[2.75 / 1.5, 0.75 / 1.5], [0.75 / 1.5, 0.75 / 1.5]])
    # (1,1): MD = 2 (class 0) and 10 (class 1); background d = (0.5, -0.5): (0.6875 - 0.375 + 0.1875) / 1.5 = 1/3.
    # (0,3): MD = 20 and 0; background d = (-0.5, 1.5): (0.6875 - 1.125 + 1.6875) / 1.5 = 5/6.
    x = torch.tensor([[1.0, 1.0], [0.0, 3.0]])
    assert m.score(None, x).tolist() == pytest.approx([-(2 - 1 / 3), -(0 - 5 / 6)])


def kl(p: list[float], q: list[float]) -> float:
    return sum(0.0 if a == 0 else math.inf if b == 0 else a * math.log(a / b) for a, b in zip(p, q))


def test_klm_by_hand():
    # Training predictions (0, 1, 2, 0, 2) -> three templates; then one with no sample predicted as class 2.
    for y, logits in ((Y, logits_of(Z)), ([0, 1, 0], torch.tensor([[3.0, 0.0, -1.0], [0.0, 2.0, 0.0], [1.0, 0.5, 0]]))):
        train = Outputs(logits, torch.tensor(y), None, None, torch.zeros(len(y), 4), torch.arange(len(y)))
        m = calibrated("klm", train=train)
        posts = [softmax(row) for row in logits.tolist()]
        templates = []
        for k in range(3):
            members = [p for p in posts if max(range(3), key=p.__getitem__) == k]
            templates.append([sum(c) / len(members) for c in zip(*members)] if members else [float(k == j)
                                                                                           for j in range(3)])
        close(m.templates, templates)
        test = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-2.0, 4.0, 1.0]])
        expected = [-min(kl(softmax(row), t) for t in templates) for row in test.tolist()]
        assert m.score(test).tolist() == pytest.approx(expected, rel=1e-10)


def test_gradnorm_matches_autograd():
    """S(x) = || d KL(u || softmax(f / T)) / d W ||_1 per sample, by a backward pass through the real layer."""
    z = torch.tensor(Z)
    for t in (1.0, 2.5):
        m = create_method("gradnorm", {"temperature": t})
        m.calibrate(MODEL, train_outputs(), state())
        expected = []
        for zi in z:
            head = Tiny().classifier
            log_p = torch.log_softmax(head(zi[None]) / t, dim=1)
            loss = (torch.full_like(log_p, 1 / 3) * (math.log(1 / 3) - log_p)).sum()  # KL(u || p)
            loss.backward()
            expected.append(head.weight.grad.abs().sum().item())
        assert m.score(logits_of(z), z).tolist() == pytest.approx(expected, rel=1e-5), t
    # by hand, z0 at T = 1: ||p - 1/3||_1 * ||z0||_1 with ||z0||_1 = 3
    p = softmax(lin(Z[0]))
    assert score(create_method("gradnorm"), [Z[0]]) == pytest.approx([sum(abs(v - 1 / 3) for v in p) * 3])


def test_temp_scaling_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, -1.0]])
    fixed = create_method("temp-scaling", {"temperature": 2.0})
    assert fixed.score(logits).tolist() == pytest.approx([max(softmax([v / 2 for v in r])) for r in logits.tolist()])
    # fitted: NLL of logits that are right but overconfident at T = 1 (two of the three samples wrong-ish)
    train_logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [4.0, 0.0, 0.0], [0.0, 0.0, 4.0]])
    y = torch.tensor([0, 1, 1, 2])

    def nll(t: float) -> float:
        return -sum(math.log(softmax([v / t for v in r])[c]) for r, c in zip(train_logits.tolist(), y.tolist())) / 4

    m = create_method("temp-scaling")
    m.calibrate(None, Outputs(train_logits, y, None, None, None, torch.arange(4)), state())
    grid = [0.5 + 0.01 * i for i in range(400)]
    best = min(grid, key=nll)
    assert m.temperature == pytest.approx(best, abs=0.01)
    assert nll(m.temperature) <= min(nll(m.temperature * 0.999), nll(m.temperature * 1.001))
    assert m.score(logits).tolist() == pytest.approx([max(softmax([v / m.temperature for v in r]))
                                                      for r in logits.tolist()])
    # separable training data: the likelihood keeps rising as T -> 0, with no optimum, so T stays 1 (plain MSP)
    m.calibrate(None, Outputs(train_logits, torch.tensor([0, 1, 0, 2]), None, None, None, torch.arange(4)), state())
    assert m.temperature == 1.0
    assert m.score(logits).tolist() == create_method("msp").score(logits.double()).tolist()
    with pytest.raises(HarnessError):
        create_method("temp-scaling").score(logits)


def test_fdbd_by_hand():
    # x = (1,1,1,1): f = (0.6, 1.3, 0), predicted 1. ||w1 - w0|| = ||(-1, 2, 1, -1)|| = sqrt 7,
    # ||w1 - w2|| = ||(1, 2, -1, -0.5)|| = 2.5. The training mean is (1.2, 0.8, 0.8, 0.6): ||x - mean|| = sqrt 0.28.
    boundary = (0.7 / math.sqrt(7) + 1.3 / 2.5) / 2
    assert score(calibrated("fdbd"), [[1.0, 1.0, 1.0, 1.0]]) == pytest.approx([boundary / math.sqrt(0.28)])
    assert score(calibrated("fdbd", {"distance_to_mean": False}), [[1.0] * 4]) == pytest.approx([boundary / 2])


def test_nnguide_by_hand():
    m = calibrated("nnguide", {"k": 2, "alpha": 1.0})
    bank = [[v * lse(lin(z)) for v in unit(z)] for z in Z]
    close(m.bank, bank, rtol=1e-6)
    x = [1.0, 2.0, 0.0, 1.0]
    sims = sorted((dot(unit(x), g) for g in bank), reverse=True)
    assert score(m, [x]) == pytest.approx([lse(lin(x)) * (sims[0] + sims[1]) / 2], rel=1e-6)
    # alpha = 1% of 5 samples is under k: the bank keeps k = 2 evenly spaced rows, the first and the last
    small = calibrated("nnguide", {"k": 2, "alpha": 0.01})
    close(small.bank, [bank[0], bank[4]], rtol=1e-6)
    # k above the bank size is capped at it: the mean over all 5
    big = calibrated("nnguide", {"k": 50, "alpha": 1.0})
    assert score(big, [x]) == pytest.approx([lse(lin(x)) * sum(sims) / 5], rel=1e-6)


def test_relation_by_hand():
    x = [2.0, 0.0, 0.0, 1.0]
    p = softmax(lin(x))
    edges = [max(dot(unit(x), unit(z)), 0.0) * dot(p, softmax(lin(z))) for z in Z]
    assert min(edges) < 0.03 < max(edges)  # the cut-off matters here
    for power, tau in ((1.0, 0.03), (2.0, 0.03), (1.0, 0.0)):
        m = calibrated("relation", {"power": power, "threshold": tau})
        assert score(m, [x]) == pytest.approx([sum(r ** power for r in edges if r > tau)], rel=1e-5), (power, tau)


def test_residual_by_hand():
    # As vim's test: W = [[1,0,0],[0,1,0]], b = 0, so the origin is 0; the training features' second moments are 2 on
    # x and y, 1 on z, no cross terms, so the 2-d principal subspace is (x, y) and the residual is |z|.
    model = Tiny([[1.0, 0, 0], [0, 1.0, 0]], [0.0, 0.0])
    z = [[2.0, 0, 1], [0, 2.0, -1], [2.0, 0, -1], [0, 2.0, 1]]
    m = calibrated("residual", {"dim": 2}, train=train_outputs(z, [0, 1, 0, 1], model), model=model)
    x = torch.tensor([[1.0, 0, 0.5], [3.0, -2.0, -2.0]])
    assert m.score(None, x).tolist() == pytest.approx([-0.5, -2.0])
    with pytest.raises(HparamError):  # dim must be below the feature size
        calibrated("residual", {"dim": 3}, train=train_outputs(z, [0, 1, 0, 1], model), model=model)


# -- independent implementations -----------------------------------------------------------------------------


def _random_case(seed: int = 0, n: int = 60, d: int = 16, classes: int = 4):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    centres = torch.rand(classes, d, generator=g) * 3
    z = (centres[y] + 0.7 * torch.randn(n, d, generator=g)).relu()
    test = (torch.randn(20, d, generator=g) * 2).relu()
    # the nearest-centre head, so every class has correctly classified samples (SHE needs them)
    model = Tiny(centres, -0.5 * (centres**2).sum(dim=1))
    return model, train_outputs(z, y, model), test


def test_scores_match_pytorch_ood():
    """pytorch-ood returns outlier scores (higher = unknown): each is the negated score here, up to a constant."""
    from pytorch_ood.detector import ASH, DICE, GEN, SCALE, SHE, KLMatching, NNGuide, ReAct, fDBD

    model, train, test = _random_case()
    head = model.classifier
    logits = logits_of(test, model)

    def ours(name: str, hp: dict | None = None) -> np.ndarray:
        return calibrated(name, hp, train=train, model=model).score(logits, test).numpy()

    def agree(a: np.ndarray, b: torch.Tensor, rtol: float = 1e-4) -> None:
        np.testing.assert_allclose(a, b.detach().double().numpy(), rtol=rtol, atol=1e-4)

    with torch.no_grad():
        maps = test.view(len(test), -1, 1, 1)

        def flat_head(x: torch.Tensor) -> torch.Tensor:
            return head(x.flatten(1))

        react = ReAct(None, flat_head, percentile=0.9).fit_feature_maps(train.features.view(len(train.y), -1, 1, 1),
                                                                        train.y)
        agree(-ours("react"), react.predict_feature_maps(maps))
        for variant in ("s", "b", "p"):
            ref = ASH(None, flat_head, variant=f"ash-{variant}", percentile=0.75).predict_feature_maps(maps)
            agree(-ours("ash", {"variant": variant, "percentile": 75.0}), ref)
        agree(-ours("scale", {"percentile": 75.0}), SCALE(None, flat_head, percentile=0.75).predict_feature_maps(maps))
        dice = DICE(None, head.weight, head.bias, p=0.9).fit_features(train.features, train.y)
        agree(-ours("dice"), dice.predict_features(test))
        agree(-ours("she"), SHE(None, head).fit_features(train.features, train.y).predict_features(test))
        agree(-ours("klm"), KLMatching(None).fit_logits(train.logits).predict_logits(logits))
        agree(-ours("fdbd"), fDBD(None, head).fit_features(train.features).predict_features(test))
        nng = NNGuide(None, head, k=7).fit_features(train.features, train.y)
        agree(-ours("nnguide", {"k": 7, "alpha": 1.0}), nng.predict_features(test))
        # pytorch-ood averages the terms (ours sums, as the paper) and clamps p to [1e-7, 1 - 1e-7], which moves
        # p^0.1 of tiny probabilities: compared on softer logits, where no probability is that small
        soft = logits / 10
        agree(-create_method("gen").score(soft).numpy() / 4, GEN.score(soft, gamma=0.1))


def test_temp_scaling_fit_matches_lbfgs():
    """The bounded scalar search against torch's L-BFGS with a strong-Wolfe line search on log T."""
    g = torch.Generator().manual_seed(3)
    y = torch.arange(200) % 5
    logits = (4 * torch.nn.functional.one_hot(y, 5) + torch.randn(200, 5, generator=g) * 2).double()
    m = create_method("temp-scaling")
    m.calibrate(None, Outputs(logits.float(), y, None, None, None, torch.arange(200)), state(5))
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], max_iter=200, tolerance_grad=1e-12, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    assert m.temperature == pytest.approx(log_t.exp().item(), rel=1e-5)


# -- direction, shape, registration, errors ------------------------------------------------------------------


def _separated_case():
    """Well-separated non-negative training features (class c near 3 e_c, unit 4 unused by the head), a head that
    reads class c off unit c, and two test points: the class-0 mean (peaked logits) and a point along the unused
    unit 4 (flat logits, far from every class)."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(90) % 3
    z = 3 * torch.eye(4)[y] + 0.3 * torch.rand(90, 4, generator=g)
    model = Tiny([[2.0, -0.5, -0.5, 0.1], [-0.5, 2.0, -0.5, 0.1], [-0.5, -0.5, 2.0, 0.1]], [0.0, 0.0, 0.0])
    known = z[y == 0].mean(dim=0, keepdim=True)
    unknown = torch.tensor([[0.0, 0.0, 0.0, 3.0]])
    return model, train_outputs(z, y, model), known, unknown


DIRECTION_HPARAMS = {"dice": {"percentile": 70.0}, "residual": {"dim": 3}, "nnguide": {"k": 10}}


@pytest.mark.parametrize("name", NEW)
def test_known_scores_above_unknown(name: str):
    model, train, known, unknown = _separated_case()
    m = calibrated(name, DIRECTION_HPARAMS.get(name), train=train, model=model)
    s_known = m.score(logits_of(known, model), known).item()
    s_unknown = m.score(logits_of(unknown, model), unknown).item()
    assert s_known > s_unknown, (name, s_known, s_unknown)


@pytest.mark.parametrize("name", NEW)
def test_one_finite_score_per_sample(name: str):
    model, train, test = _random_case(seed=1)
    test = torch.cat([test, torch.zeros(1, test.shape[1])])  # an all-zero feature row among them
    m = calibrated(name, train=train, model=model)
    out = m.score(logits_of(test, model), test)
    assert out.shape == (len(test),) and torch.isfinite(out).all(), name
    assert torch.equal(out, m.score(logits_of(test, model), test)), name  # deterministic


def test_registered_as_open_set_scores():
    names = method_names()
    for name in NEW:
        assert name in names, name
        entry = registry._METHODS[name]
        assert entry.family == "osr" and entry.protocols == ("openset",), name
        m = create_method(name)
        assert m.family == "osr" and m.protocols == frozenset({"openset"}) and m.hparams["trainer"] == "erm", name
        assert not m.scores_inputs, name
        assert m.describe()["name"] == name


@pytest.mark.parametrize("name, hp", [
    ("gen", {"gamma": 0.0}), ("gen", {"m": 0}), ("react", {"percentile": 0.0}), ("react", {"percentile": 101.0}),
    ("ash", {"percentile": 100.0}), ("ash", {"variant": "x"}), ("dice", {"percentile": -1.0}),
    ("scale", {"percentile": 100.0}), ("gradnorm", {"temperature": 0.0}), ("temp-scaling", {"temperature": -1.0}),
    ("nnguide", {"k": 0}), ("nnguide", {"alpha": 0.0}), ("nnguide", {"alpha": 1.5}), ("relation", {"power": 0.0}),
    ("relation", {"threshold": -0.1}), ("residual", {"dim": -1}), ("fdbd", {"distance_to_mean": "maybe"}),
    ("she", {"k": 3}), ("rmds", {"dim": 2}), ("klm", {"temperature": 2.0}), ("gen", {"gamma": "high"}),
])
def test_bad_hparams_are_clear_errors(name: str, hp: dict):
    with pytest.raises(HparamError) as err:
        create_method(name, hp)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["react", "ash", "dice", "scale", "gradnorm", "fdbd", "residual"])
def test_a_nonlinear_head_is_a_clear_error(name: str):
    model = Tiny()
    model.classifier = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    with pytest.raises(HarnessError, match="linear classifier head"):
        create_method(name).calibrate(model, train_outputs(), state())


@pytest.mark.parametrize("name", ["ash", "scale"])
def test_activation_shaping_refuses_negative_features(name: str):
    with pytest.raises(HarnessError, match="non-negative"):
        create_method(name).calibrate(MODEL, train_outputs([[-1.0, 0, 0, 0], *Z[1:]]), state())
