"""ODIN: temperature scaling plus a small input perturbation towards higher confidence."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.method import Method, State
from harness.core.registry import register_method
from harness.errors import HparamError


@register_method("odin")
class ODIN(Method):
    """ODIN (Liang et al., "Enhancing the Reliability of Out-of-distribution Image Detection in Neural Networks",
    ICLR 2018).

    1. y_hat = argmax_k f_k(x); loss = CE(f(x) / T, y_hat).
    2. x~ = x - epsilon * sign(grad_x loss): a step that raises the temperature-scaled softmax score, taken in pixel
       units (epsilon on images in [0, 1]) and so divided by the per-channel std of the input normalisation, as the
       reference code does.
    3. S(x) = max_k softmax(f(x~) / T)_k.

    T = 1000 and epsilon = 0.0014 are fixed (OpenOOD's defaults); the paper tunes both on out-of-distribution
    validation data, which an open-set benchmark does not hand to a method. Scores the closed-set model that
    ``trainer`` trains (default erm); its closed-set prediction stays the unperturbed argmax.
    """

    family = "osr"
    protocols = frozenset({"openset"})
    hparams = dict(trainer="erm", temperature=1000.0, epsilon=0.0014)
    # OpenOOD v1.5's APS grid (configs/postprocessors/odin.yml), searched on validation data by the protocol
    search = dict(temperature=(1.0, 10.0, 100.0, 1000.0), epsilon=(0.0014, 0.0028))
    scores_inputs = True

    def __init__(self, hparams: dict | None = None) -> None:
        super().__init__(hparams)
        if self.hparams["temperature"] <= 0 or self.hparams["epsilon"] < 0:
            raise HparamError(f"odin needs temperature > 0 and epsilon >= 0, got {self.hparams}")

    def score_inputs(self, model: nn.Module, x: Tensor, state: State) -> Tensor:
        t, eps = self.hparams["temperature"], self.hparams["epsilon"]
        # one std per channel, broadcast over the pixels (images) or taken per column (feature inputs)
        std = torch.tensor(state.input_std, dtype=x.dtype, device=x.device).view(1, -1, *(1,) * (x.ndim - 2))
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            logits = model(x)
            loss = F.cross_entropy(logits / t, logits.argmax(dim=1))
            (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            return (model(x - eps * grad.sign() / std) / t).softmax(dim=1).max(dim=1).values
