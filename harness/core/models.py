"""Model factories. Every model is ``Classifier(featurizer, classifier)`` so
methods can reach features (CORAL, UDIM) the way DomainBed's algorithms do.
A binary task gets one output unit, squeezed to shape ``(N,)``.
"""

from __future__ import annotations

from torch import Tensor, nn

from harness.core.pretrained import load_pretrained
from harness.errors import DataError


class Classifier(nn.Module):
    # Set on pretrained models: the weights' identity for the record, and the input normalisation they expect
    # (per channel, for images in [0, 1]). None means "normalise with the data's own statistics".
    pretrained_info: dict | None = None
    input_mean: tuple[float, ...] | None = None
    input_std: tuple[float, ...] | None = None

    def __init__(self, featurizer: nn.Module, n_features: int, num_classes: int) -> None:
        super().__init__()
        self.featurizer = featurizer
        self.n_features = n_features
        self.num_outputs = 1 if num_classes == 2 else num_classes
        head = nn.Linear(n_features, self.num_outputs)
        self.classifier = nn.Sequential(head, nn.Flatten(0)) if self.num_outputs == 1 else head

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.featurizer(x))


def mlp(in_features: int, num_classes: int, hidden: tuple[int, ...] = (64, 64), dropout: float = 0.0) -> Classifier:
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    return Classifier(nn.Sequential(*layers), width, num_classes)


def small_cnn(in_chans: int, num_classes: int, width: int = 32) -> Classifier:
    """A four-block conv net in the spirit of DomainBed's MNIST_CNN, sized for CPU smoke runs."""

    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(8, cout), nn.ReLU()]

    feat = nn.Sequential(
        *block(in_chans, width, 1), *block(width, 2 * width, 2), *block(2 * width, 2 * width, 1),
        *block(2 * width, 2 * width, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
    return Classifier(feat, 2 * width, num_classes)


def timm_model(name: str, in_chans: int, num_classes: int, pretrained: bool = False) -> Classifier:
    """A timm backbone as featurizer (``num_classes=0`` gives pooled features) under a new head.

    ``pretrained=True`` loads offline ImageNet weights (``harness.core.pretrained.PRETRAINED`` lists the archs) into
    timm's TF-faithful variant of the arch, drops the ImageNet head and, for ``in_chans != 3``, adapts the stem by
    timm's rule (see ``harness.core.pretrained.load_pretrained``). The model then carries ``pretrained_info`` (arch,
    sha256, package, normalisation, input size) and ``input_mean``/``input_std``, one value per input channel.
    """
    if pretrained:
        backbone, weights = load_pretrained(name, in_chans)
        model = Classifier(backbone, backbone.num_features, num_classes)
        model.pretrained_info = weights.info()
        model.input_mean, model.input_std = weights.channel_stats(in_chans)
        return model
    import timm  # heavy import, only when a timm case runs

    backbone = timm.create_model(name, num_classes=0, in_chans=in_chans)
    return Classifier(backbone, backbone.num_features, num_classes)


def imagenet_model(arch: str) -> nn.Module:
    """The full pretrained ImageNet classifier (1000 logits) of ``arch``, in eval mode, for checking the weights.

    Inputs: RGB in [0, 1], normalised by ``model.input_mean``/``model.input_std``.
    """
    model, weights = load_pretrained(arch, imagenet_head=True)
    model.pretrained_info = weights.info()
    model.input_mean, model.input_std = weights.mean, weights.std
    return model.eval()


def check_in_chans(model: nn.Module, channels: int, dataset: str) -> None:
    """A clear error instead of a conv shape mismatch deep in torch."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            if module.in_channels != channels:
                raise DataError(
                    f"{dataset} has {channels} bands/channels but the model expects {module.in_channels}"
                )
            return
