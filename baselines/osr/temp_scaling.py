"""Temperature scaling: the maximum softmax probability of logits divided by a temperature fitted by likelihood."""

from __future__ import annotations

import torch
from scipy.optimize import minimize_scalar
from torch import Tensor, nn

from harness.core.method import Method, State
from harness.core.registry import register_method
from harness.errors import HarnessError, HparamError

# The inverse temperature 1/T is searched in this range (T from 0.01 to 100): wide enough for any net's calibration.
BETA_RANGE = (0.01, 100.0)


def fit_temperature(logits: Tensor, y: Tensor) -> float:
    """The T that minimises the mean negative log-likelihood of softmax(logits / T) on labels ``y``.

    The NLL is convex in beta = 1/T (a log-sum-exp of linear functions of beta minus a linear term), so a bounded
    scalar search finds its one minimum. When every sample's own logit is strictly the largest the NLL falls towards
    0 as T -> 0 and has no minimum: 1.0 is returned then, since any small T would saturate every probability to 1.
    """
    f = logits.double()
    rows = torch.arange(len(f))
    correct = f[rows, y.long()]
    rivals = f.index_put((rows, y.long()), torch.tensor(float("-inf"), dtype=f.dtype)).max(dim=1).values
    if bool((correct > rivals).all()):
        return 1.0

    def nll(beta: float) -> float:
        return float(((beta * f).logsumexp(dim=1) - beta * correct).mean())

    beta = minimize_scalar(nll, bounds=BETA_RANGE, method="bounded", options={"xatol": 1e-8}).x
    return 1.0 / float(beta)


@register_method("temp-scaling")
class TemperatureScaling(Method):
    """Temperature scaling (Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural Networks", ICML 2017),
    used as an open-set score as in OpenOOD:

    1. T = argmin_T -(1/N) sum_i log softmax(f(x_i) / T)_{y_i}, the negative log-likelihood of labelled
       in-distribution data (one scalar for the whole network).
    2. S(x) = max_k softmax(f(x) / T)_k, MSP of the temperature-scaled logits.

    ``temperature`` = 0 (default) fits T as in step 1 on the training split's outputs, the only labelled data
    ``calibrate`` receives; the paper and OpenOOD fit on a held-out ID validation split. Training outputs are more
    confident than held-out ones, so the fitted T is lower (sharper) than a validation fit. Where the model classifies
    the training split perfectly the NLL keeps falling as T -> 0 and has no optimum; T = 1 is then kept, so the score
    is plain MSP rather than probabilities all saturated at 1 (:func:`fit_temperature`). A ``temperature`` > 0 fixes
    T instead. Scores the closed-set model that ``trainer`` trains (default erm).
    """

    family = "osr"
    protocols = frozenset({"openset"})
    hparams = dict(trainer="erm", temperature=0.0)

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if self.hparams["temperature"] < 0:
            raise HparamError(f"hparam temperature={self.hparams['temperature']!r} for 'temp-scaling' must be >= 0 "
                              "(0 = fit by likelihood)")
        self.temperature = self.hparams["temperature"] or None

    def calibrate(self, model: nn.Module, train, state: State) -> None:
        if not self.hparams["temperature"]:
            self.temperature = fit_temperature(train.logits, train.y)

    def score(self, logits: Tensor, features: Tensor | None = None) -> Tensor:
        if self.temperature is None:
            raise HarnessError("temp-scaling: calibrate fits the temperature before any score")
        return (logits.double() / self.temperature).softmax(dim=1).max(dim=1).values
