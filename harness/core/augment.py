"""Batched augmentation on the training device, with an independent random draw for every sample.

Named policies (``policy_names()``), built once per ``(name, image_size)`` by ``get_policy`` and applied to float
batches ``N x C x H x W`` in [0, 1] on any device. The ops are kornia's: its augmentations draw their parameters per
sample (``same_on_batch=False``), where torchvision's v2 transforms draw one set per batch.

- ``none``: the identity. It leaves the caller's generator untouched, so a run without augmentation keeps the RNG
  stream it had before augmentation existed.
- ``flip-crop``: the standard small-image recipe, a random crop from the image padded with zeros, then a horizontal
  flip. The padding is 4 px at 32 px (CIFAR's standard) and scales as side / 8 for other sides up to 64 px (1 px at
  8 px, 8 px at 64 px), since 4 px on an 8 px digit would shift it by half its width. Above 64 px the crop is a
  random-resized crop with scale (0.8, 1) instead, where a 4 px shift would hardly change the image.
- ``domainbed``: DomainBed's training transform (Gulrajani & Lopez-Paz, 2021): random-resized crop scale (0.7, 1),
  horizontal flip, colour jitter 0.3 for brightness, contrast, saturation and hue, random grayscale p = 0.1.
- ``randaugment``: the "good closed-set classifier" recipe of Vaze et al. (2022): RandAugment with n = 1, m = 9 (their
  code's default), then ``flip-crop``'s crop and flip. kornia's RandAugment picks its ops once per batch, so each
  sample here draws its own ops, with replacement as in their code, torchvision and timm. The candidates are
  kornia's default list: the paper's ops without cutout, and translation of ±10% of the side.
- ``ssl``: SimCLR's views (Chen et al., 2020): random-resized crop scale (0.2, 1), or SimCLR's ImageNet (0.08, 1)
  from 128 px up; horizontal flip; colour jitter (0.4, 0.4, 0.4, 0.1) with p = 0.8; grayscale p = 0.2; Gaussian
  blur p = 0.5, sigma in (0.1, 2), kernel int(10% of the side) rounded up to odd, at least 3. Use
  ``views`` for two or more views.

Channels: colour ops need RGB. On 1-channel or multispectral input (any count but 3) only the geometric steps run:
colour jitter, grayscale and blur are skipped, and RandAugment draws from its geometric ops only (rotate, shear,
translate). ``describe()`` says so per step.

Reproducibility: each call draws one seed from the caller's ``torch.Generator`` (advancing it, so consecutive
batches differ) and runs kornia inside ``torch.random.fork_rng`` seeded with it. The same generator state gives the
same output and the global RNG state is left as it was. kornia samples the parameters on the CPU, so a seed gives
the same crops and factors whatever the device of the batch. With a CUDA generator, reading the seed is one host
sync per call.

Cost on the CPU (one thread, a batch of 64 RGB images; ``benchmarks/bench_augment.py``): flip-crop about 2 ms at
32 px and 20-30 ms at 96 px; domainbed, randaugment and ssl 15-25 ms at 32 px, and 70-220 ms at 96 px, where kornia's
hue jitter (an RGB-HSV round trip) is most of domainbed's and ssl's time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import kornia
import kornia.augmentation as K
import torch
from kornia.augmentation.auto import RandAugment
from kornia.augmentation.auto.rand_augment.rand_augment import default_policy as RANDAUGMENT_OPS
from torch import Tensor, nn

from harness.errors import DataError, UsageError

SMALL_SIDE = 64  # up to this side, flip-crop pads and crops; above it, random-resized crop
LARGE_SIDE = 128  # from this side up, ssl crops down to SimCLR's ImageNet scale 0.08
GEOMETRIC_RANDAUGMENT_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")


@dataclass(frozen=True)
class _Step:
    """One op: its record entry, the module for RGB input, and the module for other channel counts (None: skip)."""

    spec: dict
    rgb: nn.Module
    other: nn.Module | None


def _geometric(spec: dict, module: nn.Module) -> _Step:
    return _Step({**spec, "non_rgb": "applied"}, module, module)


def _photometric(spec: dict, module: nn.Module) -> _Step:
    return _Step({**spec, "non_rgb": "skipped"}, module, None)


class _PerSampleRandAugment(nn.Module):
    """RandAugment (Cubuk et al., 2020) with its ``n`` ops drawn per sample, with replacement.

    Each candidate is kornia's RandAugment over a one-op policy, so kornia keeps the magnitude mapping (m / 30 of
    the op's range, random sign for symmetric ops); each slot applies op k to the samples that drew k.
    """

    def __init__(self, n: int, m: int, ops: list) -> None:
        super().__init__()
        self.n = n
        self.ops = nn.ModuleList(RandAugment(n=1, m=m, policy=[op]) for op in ops)

    def forward(self, x: Tensor) -> Tensor:
        out = x.clone()
        for _ in range(self.n):
            choice = torch.randint(len(self.ops), (len(x),))
            for k in choice.unique().tolist():
                idx = (choice == k).nonzero().squeeze(1).to(x.device)
                out.index_copy_(0, idx, self.ops[k](out.index_select(0, idx)))
        return out


def _randaugment(n: int, m: int) -> _Step:
    everything = list(RANDAUGMENT_OPS)
    geometric = [op for op in everything if op[0][0] in GEOMETRIC_RANDAUGMENT_OPS]
    spec = {
        "op": "RandAugment", "n": n, "m": m, "per_sample_ops": True, "with_replacement": True,
        "candidates": [op[0][0] for op in everything],
        "non_rgb": f"candidates {list(GEOMETRIC_RANDAUGMENT_OPS)} only",
    }
    return _Step(spec, _PerSampleRandAugment(n, m, everything), _PerSampleRandAugment(n, m, geometric))


def _resized_crop(size: tuple[int, int], scale: tuple[float, float]) -> _Step:
    ratio = (3 / 4, 4 / 3)
    spec = {"op": "RandomResizedCrop", "scale": list(scale), "ratio": list(ratio), "resample": "bilinear"}
    return _geometric(spec, K.RandomResizedCrop(size, scale=scale, ratio=ratio))


def _small_image_crop(size: tuple[int, int]) -> _Step:
    side = min(size)
    if side > SMALL_SIDE:
        return _resized_crop(size, (0.8, 1.0))
    pad = max(1, round(side / 8))
    return _geometric({"op": "RandomCrop", "padding": pad, "fill": 0.0}, K.RandomCrop(size, padding=pad, fill=0.0))


def _flip() -> _Step:
    return _geometric({"op": "RandomHorizontalFlip", "p": 0.5}, K.RandomHorizontalFlip(p=0.5))


def _jitter(brightness: float, contrast: float, saturation: float, hue: float, p: float) -> _Step:
    spec = {"op": "ColorJitter", "brightness": brightness, "contrast": contrast, "saturation": saturation,
            "hue": hue, "p": p}
    return _photometric(spec, K.ColorJitter(brightness, contrast, saturation, hue, p=p))


def _grayscale(p: float) -> _Step:
    return _photometric({"op": "RandomGrayscale", "p": p}, K.RandomGrayscale(p=p))


_BUILDERS: dict[str, Callable[[tuple[int, int]], list[_Step]]] = {}


def _policy(name: str) -> Callable:
    def register(build: Callable[[tuple[int, int]], list[_Step]]) -> Callable:
        _BUILDERS[name] = build
        return build
    return register


@_policy("none")
def _none(size: tuple[int, int]) -> list[_Step]:
    return []


@_policy("flip-crop")
def _flip_crop(size: tuple[int, int]) -> list[_Step]:
    return [_small_image_crop(size), _flip()]


@_policy("domainbed")
def _domainbed(size: tuple[int, int]) -> list[_Step]:
    return [_resized_crop(size, (0.7, 1.0)), _flip(), _jitter(0.3, 0.3, 0.3, 0.3, p=1.0), _grayscale(0.1)]


@_policy("randaugment")
def _vaze_randaugment(size: tuple[int, int]) -> list[_Step]:
    return [_randaugment(n=1, m=9), _small_image_crop(size), _flip()]


@_policy("ssl")
def _simclr(size: tuple[int, int]) -> list[_Step]:
    side = min(size)
    kernel = max(3, int(0.1 * side) // 2 * 2 + 1)
    blur = _photometric(
        {"op": "RandomGaussianBlur", "kernel_size": kernel, "sigma": [0.1, 2.0], "p": 0.5},
        K.RandomGaussianBlur(kernel, sigma=(0.1, 2.0), p=0.5),
    )
    scale = (0.08 if side >= LARGE_SIDE else 0.2, 1.0)
    return [_resized_crop(size, scale), _flip(), _jitter(0.4, 0.4, 0.4, 0.1, p=0.8), _grayscale(0.2), blur]


def policy_names() -> list[str]:
    """The registered policy names, sorted."""
    return sorted(_BUILDERS)


def get_policy(name: str, image_size: tuple[int, int]) -> AugmentPolicy:
    """Build the policy ``name`` for images of ``image_size`` (H, W); its kornia modules are built once, here."""
    if name not in _BUILDERS:
        raise UsageError(f"unknown augmentation policy {name!r}; choose one of {', '.join(policy_names())}")
    size = tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 1:
        raise UsageError(f"image_size must be (height, width) with positive sides, got {image_size!r}")
    return AugmentPolicy(name, size, _BUILDERS[name](size))


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run with the global RNGs of the CPU and ``device`` seeded, then restore them."""
    accelerators = [] if device.type == "cpu" else [device]
    with torch.random.fork_rng(devices=accelerators, device_type=device.type):
        torch.default_generator.manual_seed(seed)
        if device.type == "cuda":  # seed only this GPU, the one fork_rng restores
            index = torch.cuda.current_device() if device.index is None else device.index
            torch.cuda.default_generators[index].manual_seed(seed)
        elif accelerators:
            torch.manual_seed(seed)
        yield


class AugmentPolicy:
    """A named augmentation policy: call it on a float batch with the run's generator."""

    def __init__(self, name: str, image_size: tuple[int, int], steps: list[_Step]) -> None:
        self.name, self.image_size, self.steps = name, image_size, steps

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Augment ``x`` (N x C x H x W float in [0, 1]); each sample gets its own draw. Same shape and device."""
        self._check(x)
        if not self.steps or len(x) == 0:
            return x
        seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device).item())
        modules = [s.rgb if x.shape[1] == 3 else s.other for s in self.steps]
        with _seeded(seed, x.device), torch.no_grad():
            for module in modules:
                if module is not None:
                    x = module(x)
        return x.clamp_(0.0, 1.0)  # resampling and blur overshoot [0, 1] by float rounding

    def views(self, x: Tensor, n: int, generator: torch.Generator) -> list[Tensor]:
        """``n`` independently augmented views of ``x`` (the SSL protocol's input)."""
        if n < 1:
            raise UsageError(f"views needs n >= 1, got {n}")
        return [self(x, generator) for _ in range(n)]

    def describe(self) -> dict:
        """The policy's name and every op's parameters, JSON-able, for the run record."""
        return {
            "name": self.name,
            "image_size": list(self.image_size),
            "kornia": kornia.__version__,
            "per_sample": True,
            "steps": [dict(s.spec) for s in self.steps],
            "non_rgb": "input with other than 3 channels gets the geometric steps only (see each step's non_rgb)",
        }

    def _check(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise DataError(f"augmentation policy {self.name!r} expects a batch N x C x H x W, got {shape}")
        if not x.is_floating_point():
            raise DataError(f"augmentation policy {self.name!r} expects float images in [0, 1], got {x.dtype}; "
                            "convert uint8 batches with x.float() / 255 first")
        if tuple(x.shape[-2:]) != self.image_size:
            raise DataError(f"augmentation policy {self.name!r} was built for {self.image_size[0]}x"
                            f"{self.image_size[1]} images, got {x.shape[-2]}x{x.shape[-1]}")

    def __repr__(self) -> str:
        return f"AugmentPolicy({self.name!r}, image_size={self.image_size})"
