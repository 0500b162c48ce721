"""Oracle matching: fit the model to the mean outputs of models retrained without the forget set."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.core.method import Method, State
from harness.core.registry import register_method


@register_method("dmm")
class DatamodelMatching(Method):
    """Datamodel matching, oracle variant (Georgiev et al., "Attribute-to-Delete: Machine Unlearning via Datamodel
    Matching", 2024).

    DMM fine-tunes the model so its outputs on forget and retain data match *predicted* outputs of a retrained model
    (predicted by datamodels). Here the prediction is replaced by the actual mean logits of retrained oracles (the
    paper's "oracle matching"): minimise ‖f(x) - mean_k f_k^oracle(x)‖² over one forget and one retain batch per
    step. The oracles are the method's own (separately seeded, never the ones it is scored against) and their
    training time is charged to its RTE; its record says ``oracle_matching``. No labels are used.
    """

    family = "unlearning"
    protocols = frozenset({"unlearn"})
    hparams = dict(lr_factor=1.0)  # lr_factor: lowest mean gap, docs/tuning/unlearning__*__smoke__dmm.json
    uses_oracles = True
    reads_labels = False

    def unlearn(self, model: nn.Module, forget, retain, state: State) -> nn.Module:
        def loss(pair):
            x = torch.cat([pair[0].x, pair[1].x])
            index = torch.cat([pair[0].index, pair[1].index])
            return F.mse_loss(model(x), state.oracle_logits(index))

        engine = state.engine(model.parameters(), self.hparams["lr_factor"])
        state.optimize(model, engine, loss, zip(forget.forever(), retain.forever()))
        return model
