"""The standard transform and band checks.

Standard transform: images are scaled to [0, 1] at load time (uint8 / 255; USPS and MNIST already are;
multispectral digital numbers / 10000); a suite then normalises per channel with the mean and std
of its *training* split: ``normalize(x, *channel_stats(train.x))``. Tables are z-scored per column
the same way (``channel_stats`` works on ``N x D`` too).
"""

from __future__ import annotations

import torch
from torch import Tensor

from harness.data.dataset import ArrayDataset, Split, to_float
from harness.errors import DataError


def _channel_sums(x: Tensor, rows: Tensor | None, chunk: int, convert) -> tuple[Tensor, Tensor, int]:
    """Per-channel float64 sum, sum of squares and value count of ``convert(x[rows])``, one chunk at a time, so
    a large set never exists whole as floating point."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    sq = torch.zeros_like(total)
    count = 0
    n = len(x) if rows is None else len(rows)
    for start in range(0, n, chunk):
        raw = x[start : start + chunk] if rows is None else x[rows[start : start + chunk]]
        part = convert(raw).transpose(0, 1).reshape(x.shape[1], -1)
        total += part.sum(1)
        sq += (part * part).sum(1)
        count += part.shape[1]
    return total, sq, count


def channel_stats(x: Tensor | ArrayDataset | Split, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Per-channel (images ``N x C x H x W``) or per-column (tables ``N x D``) mean and std, float32.

    Accumulates in float64 over chunks, so large sets neither lose precision nor double their memory.
    """
    if not isinstance(x, Tensor):
        x = x.x
    scale = 255.0 if x.dtype == torch.uint8 else 1.0  # uint8 images count as values in [0, 1]
    total, sq, count = _channel_sums(x, None, chunk, lambda part: part.double() / scale)
    if count == 0:
        raise DataError("channel_stats of an empty dataset")
    mean = total / count
    std = (sq / count - mean * mean).clamp_min(0).sqrt()
    return mean.float(), std.float()


def normalization_stats(x: Tensor, indices: Tensor | None = None, chunk: int = 1024
                        ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and sample std (ddof=1, floored at 1e-6) of images as values in [0, 1], over ``indices``.

    The suites' input normalisation. Chunked like ``channel_stats``: the float copy of PACS's training split
    took 660 MB at 96 px.
    """
    total, sq, n = _channel_sums(x, indices, chunk, lambda part: to_float(part).double())
    if n < 2:
        raise DataError("normalization_stats needs at least 2 values per channel")
    mean = total / n
    var = ((sq - n * mean * mean) / (n - 1)).clamp_min(0)
    return tuple(mean.tolist()), tuple(var.sqrt().clamp_min(1e-6).tolist())


def normalize(x: Tensor, mean: Tensor, std: Tensor, eps: float = 1e-6) -> Tensor:
    """``(x - mean) / std`` per channel (dim 1); works for ``N x C x H x W`` and ``N x D``."""
    x = to_float(x)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.view(shape).to(x)) / (std.view(shape).to(x) + eps)


def check_bands(dataset_or_channels: int | Tensor | ArrayDataset | Split, model_in_chans: int, name: str = "") -> int:
    """Raise :class:`DataError` unless the data has ``model_in_chans`` channels; returns the channel count."""
    d = dataset_or_channels
    if isinstance(d, int):
        channels = d
    else:
        x = d if isinstance(d, Tensor) else d.x
        channels = int(x.shape[1])
        name = name or getattr(d, "name", "") or getattr(getattr(d, "base", None), "name", "")
    if channels != model_in_chans:
        noun = "band" if channels == 1 else "bands"
        raise DataError(
            f"dataset {name or '?'} has {channels} {noun} but the model expects {model_in_chans} input channels; "
            f"build the model with in_chans={channels} or select {model_in_chans} bands from the data"
        )
    return channels
