"""ScatSimCLR: SimCLR on a fixed scattering-transform front end."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from baselines.ssl.simclr import SimCLR
from harness.core.functional import conv_encoder
from harness.core.registry import register_method
from harness.errors import UsageError


def scattering_channels(J: int, L: int) -> int:
    """Scattering paths per input channel up to order 2: 1 + J L + L^2 J (J - 1) / 2."""
    return 1 + J * L + L * L * J * (J - 1) // 2


class ScatteringFrontEnd(nn.Module):
    """kymatio's 2D scattering (Morlet wavelets, J scales, L angles, order 2), paths stacked as channels:
    N x C x H x W -> N x C*K x H/2^J x W/2^J. It has no trainable parameters; its filters are buffers."""

    def __init__(self, J: int, L: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        # the 2D frontend module directly: ``kymatio.torch`` also imports the 3D frontend, which needs
        # scipy.special.sph_harm, gone from recent scipy
        from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D

        self.scattering = ScatteringTorch2D(J=J, shape=tuple(image_size), L=L)

    def forward(self, x: Tensor) -> Tensor:
        return self.scattering(x.contiguous()).flatten(1, 2)


def scattering_encoder(in_chans: int, image_size: list[int], J: int, L: int, widths: list[int],
                       strides: list[int]) -> nn.Sequential:
    """Scattering front end, BatchNorm over its channels, then a small trainable conv net (the "adaptive network")."""
    if any(side % 2**J for side in image_size):
        raise UsageError(f"scatsimclr: image sides {image_size} must be divisible by 2^J = {2**J}")
    channels = in_chans * scattering_channels(J, L)
    head = conv_encoder(channels, widths, strides)
    net = nn.Sequential(ScatteringFrontEnd(J, L, image_size), nn.BatchNorm2d(channels), *head)
    net.feature_dim = head.feature_dim
    return net


@register_method("scatsimclr")
class ScatSimCLR(SimCLR):
    """ScatSimCLR (Kinakh, Taran & Voloshynovskiy, "ScatSimCLR: self-supervised contrastive learning with pretext
    task regularization for small-scale datasets", ICCV Workshops 2021), without the pretext task.

    The encoder is a fixed scattering transform (kymatio, J = 2 scales, L = 8 angles, order 2: 81 paths per colour
    channel at a quarter of the side) followed by BatchNorm and a trainable conv net (``widths``/``strides``);
    SimCLR's projector and NT-Xent loss train it. The paper's adaptive network is a ResNet and it adds a
    rotation/jigsaw pretext loss; both are left out here, the conv net sized for CPU budgets.
    """

    family = "ssl"
    protocols = frozenset({"pretrain"})
    hparams = dict(SimCLR.hparams, J=2, L=8, widths=(64, 128), strides=(1, 2))

    def encoder_spec(self, spec: dict[str, Any], task: Any) -> dict[str, Any]:
        h = self.hparams
        kwargs = dict(in_chans=task.in_chans, image_size=list(task.image_size), J=h["J"], L=h["L"],
                      widths=list(h["widths"]), strides=list(h["strides"]))
        return {"builder": "baselines.ssl.scatsimclr:scattering_encoder", "kwargs": kwargs}
