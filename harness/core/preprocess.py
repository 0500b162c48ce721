"""Preprocessing policies for frozen-encoder probes: geometry, then normalisation.

Corley et al., "Revisiting pre-trained remote sensing model benchmarks: resizing and normalization matters"
(2023) make preprocessing a benchmark axis: the same frozen encoder scores very differently on EuroSAT at its
native 64 px and resized to the 224 px it was trained at, and under different input normalisations. A
:class:`Preprocess` is one point of that grid. It maps a stored batch to the encoder's input in three steps:

1. **Scale** to float in [0, 1], the loaders' standard scaling: ``uint8 / 255`` for 8-bit images; float data
   passes through (multispectral reflectance is already Sentinel-2 DN / 10000, clipped to [0, 1]).
2. **Geometry** (:class:`Geometry`):
   - ``native``: unchanged;
   - ``resize<s>``: bilinear resize of the whole image to s x s, antialiased when shrinking (a triangle filter
     stretched by the scale factor, as PIL and torchvision's antialias; plain bilinear when enlarging);
   - ``crop<s>``: centre crop s x s at native resolution (torchvision's convention: top = round((H - s) / 2),
     Python's round). A crop as large as the image is ``native``; a crop larger than it is not applicable.
3. **Normalisation** (``NORMS``), per channel ``(x - mean) / std`` unless stated:
   - ``divide``: nothing more ("divide by 255");
   - ``dataset``: the per-channel mean and std of the probed images at native size (published dataset
     statistics are taken over the whole dataset in the same way);
   - ``imagenet``: ImageNet's RGB mean/std; a multispectral channel c takes RGB statistic c mod 3, the rule by
     which timm's ``adapt_input_conv`` (used for the pretrained stem) repeats the RGB filters over the bands;
   - ``minmax``: per image and per channel, ``(x - min) / (max - min)`` (a band stretch); a constant channel
     becomes 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.data.dataset import to_float
from harness.errors import DataError, UsageError

NORMS = ("divide", "dataset", "imagenet", "minmax")
MODES = ("native", "resize", "crop")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize(x: Tensor, size: int) -> Tensor:
    """Bilinear resize of ``N x C x H x W`` floats to ``size x size``; antialiased when shrinking."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def center_crop(x: Tensor, size: int) -> Tensor:
    """The central ``size x size`` window (top/left = round((H - size) / 2), as torchvision)."""
    h, w = x.shape[-2:]
    if size > h or size > w:
        raise UsageError(f"centre crop {size} px is larger than the {h}x{w} image")
    top, left = int(round((h - size) / 2)), int(round((w - size) / 2))
    return x[..., top:top + size, left:left + size]


def minmax(x: Tensor) -> Tensor:
    """Per image and channel, ``(x - min) / (max - min)``; a constant channel maps to 0."""
    flat = x.flatten(2)
    lo = flat.min(2).values[..., None, None]
    span = flat.max(2).values[..., None, None] - lo
    return (x - lo) / torch.where(span > 0, span, torch.ones_like(span))


def imagenet_stats(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """ImageNet mean/std per channel; channel c takes RGB statistic c mod 3 (see module docstring)."""
    return (tuple(IMAGENET_MEAN[c % 3] for c in range(channels)), tuple(IMAGENET_STD[c % 3] for c in range(channels)))


@dataclass(frozen=True)
class Geometry:
    """``native``, or resize / centre crop to ``size`` x ``size``."""

    mode: str
    size: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"geometry mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if (self.mode == "native") != (self.size is None):
            raise UsageError(f"geometry {self.mode!r} {'takes no' if self.mode == 'native' else 'needs a'} size")

    @classmethod
    def parse(cls, name: str) -> Geometry:
        """``"native"``, ``"resize224"`` or ``"crop64"``."""
        for mode in ("resize", "crop"):
            if name.startswith(mode) and name[len(mode):].isdigit():
                return cls(mode, int(name[len(mode):]))
        if name == "native":
            return cls("native")
        raise UsageError(f"geometry {name!r}: expected native, resize<size> or crop<size>")

    @property
    def name(self) -> str:
        return "native" if self.mode == "native" else f"{self.mode}{self.size}"

    def applies_to(self, native: tuple[int, int]) -> bool:
        """False for a crop larger than the image (there is nothing to crop)."""
        return self.mode != "crop" or (self.size <= native[0] and self.size <= native[1])

    def canonical(self, native: tuple[int, int]) -> Geometry:
        """``native`` for a resize or crop to the image's own size (the same input)."""
        return Geometry("native") if self.size is not None and (self.size, self.size) == tuple(native) else self

    def __call__(self, x: Tensor) -> Tensor:
        if self.mode == "resize":
            return resize(x, self.size)
        if self.mode == "crop":
            return center_crop(x, self.size)
        return x


def geometry_grid(sizes: Sequence[int | str], native: tuple[int, int]) -> list[Geometry]:
    """Native, then every size by resize, then every size by centre crop; duplicates of native and crops
    larger than the image dropped."""
    out = [Geometry("native")]
    for mode in ("resize", "crop"):
        for s in sizes:
            if s == "native":
                continue
            g = Geometry(mode, int(s)).canonical(native)
            if g.applies_to(native) and g not in out:
                out.append(g)
    return out


@dataclass(frozen=True)
class Preprocess:
    """One grid point: geometry then normalisation. ``stats`` holds the per-channel mean/std for the
    ``dataset`` and ``imagenet`` policies (None otherwise)."""

    geometry: Geometry
    norm: str
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise UsageError(f"normalisation {self.norm!r}: choose one of {', '.join(NORMS)}")
        if (self.norm in ("dataset", "imagenet")) != (self.stats is not None):
            raise UsageError(f"normalisation {self.norm!r} {'needs' if self.stats is None else 'takes no'} "
                             "per-channel statistics")

    @classmethod
    def make(cls, geometry: Geometry | str, norm: str, channels: int,
             dataset_stats: tuple[Sequence[float], Sequence[float]] | None = None) -> Preprocess:
        """The policy for ``channels``-band input; ``dataset_stats`` is required for ``norm="dataset"``."""
        geometry = Geometry.parse(geometry) if isinstance(geometry, str) else geometry
        stats = None
        if norm == "imagenet":
            stats = imagenet_stats(channels)
        elif norm == "dataset":
            if dataset_stats is None:
                raise UsageError("the 'dataset' normalisation needs the dataset's per-channel mean and std")
            mean, std = dataset_stats
            if len(mean) != channels or len(std) != channels:
                raise UsageError(f"dataset statistics have {len(mean)} channels, the data {channels}")
            dead = [c for c, s in enumerate(std) if not float(s) > 0]
            if dead:
                raise DataError(f"channel(s) {dead} are constant over the dataset: the 'dataset' normalisation "
                                "would divide by a zero std; drop those bands")
            stats = (tuple(float(m) for m in mean), tuple(float(s) for s in std))
        return cls(geometry, norm, stats)

    @property
    def name(self) -> str:
        return f"{self.geometry.name}/{self.norm}"

    def key(self) -> dict:
        """Everything that shapes the output, for cache keys."""
        return {"geometry": self.geometry.name, "norm": self.norm, "stats": self.stats}

    def output_size(self, native: tuple[int, int]) -> tuple[int, int]:
        """Height and width of the output for images of size ``native``."""
        return tuple(native) if self.geometry.size is None else (self.geometry.size, self.geometry.size)

    def __call__(self, x: Tensor) -> Tensor:
        x = self.geometry(to_float(x))
        if self.norm == "minmax":
            return minmax(x)
        if self.stats is None:
            return x
        mean, std = (torch.tensor(v, dtype=x.dtype, device=x.device).view(1, -1, 1, 1) for v in self.stats)
        if mean.shape[1] != x.shape[1]:
            raise UsageError(f"{self.name}: statistics for {mean.shape[1]} channels, input has {x.shape[1]}")
        return (x - mean) / std


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "MODES", "NORMS", "Geometry", "Preprocess", "center_crop",
           "geometry_grid", "imagenet_stats", "minmax", "resize"]
