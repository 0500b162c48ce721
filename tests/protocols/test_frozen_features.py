"""Frozen pretrained features: computed once per (kind, size, images) and cached, non-negative (post-ReLU6), fed to a
linear head; a case that names them trains only that head, and erm-strong (pixel augmentation) declines it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.core.method import Method
from harness.core.registry import create_method
from harness.errors import Unsupported, UsageError
from harness.protocols import frozen, store


def test_features_are_cached_by_content_and_size(cache_dir, monkeypatch):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 3, 20, 20), dtype=torch.uint8, generator=g)
    calls = []
    real = frozen.extract
    monkeypatch.setattr(frozen, "extract", lambda *a: calls.append(1) or real(*a))
    z = frozen.frozen_features(images, "lite0-frozen", 32)
    assert z.shape == (5, 1280) and z.dtype == torch.float32 and (z >= 0).all()
    assert torch.equal(frozen.frozen_features(images, "lite0-frozen", 32), z) and len(calls) == 1  # from the cache
    frozen.frozen_features(images[:4], "lite0-frozen", 32)
    frozen.frozen_features(images, "lite0-frozen", 40)
    assert len(calls) == 3  # other images or another size: computed again
    assert len(list((cache_dir / "features" / "frozen").glob("*.safetensors"))) == 3
    # one image alone gives the same features as in its batch (eval mode: no batch statistics)
    assert torch.allclose(frozen.frozen_features(images[:1], "lite0-frozen", 32)[0], z[0], atol=1e-5)
    assert store.get_or_compute is frozen.get_or_compute


def test_bad_kind_and_bad_input():
    with pytest.raises(UsageError, match="lite0-frozen"):
        frozen.frozen_features(torch.zeros(1, 3, 8, 8), "resnet-frozen", 32)
    with pytest.raises(UsageError, match="N x C x H x W"):
        frozen.frozen_features(torch.zeros(4, 10), "lite0-frozen", 32)


def test_head_reads_the_features_as_penultimate():
    model = frozen.head(1280, 6)
    assert isinstance(model.featurizer, nn.Identity) and model.classifier.in_features == 1280
    z = torch.rand(3, 1280)
    assert torch.equal(model.featurizer(z), z) and model(z).shape == (3, 6)


def test_erm_strong_declines_a_feature_task():
    class View:  # the fields check_task reads
        protocol, suite, case, num_classes, num_domains = "openset", "openset", "cub-ssb", 24, 1
        unlabeled_split, image_size = None, None

    with pytest.raises(Unsupported, match="frozen features"):
        create_method("erm-strong").check_task(View())
    View.image_size = (32, 32)
    create_method("erm-strong").check_task(View())
    assert isinstance(create_method("erm"), Method)
