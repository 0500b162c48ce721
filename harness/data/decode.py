"""File decoders: images through PIL (threaded), GeoTIFF stacks, MNIST idx files.

Every failure becomes a :class:`DataError` that names the file, so a user with
one bad JPEG among ten thousand learns which one.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from harness.errors import DataError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")
Size = int | tuple[int, int] | None


def _hw(size: Size) -> tuple[int, int] | None:
    if size is None:
        return None
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _workers() -> int:
    # PIL and tifffile release the GIL while decoding, so threads give real parallelism
    return min(8, os.cpu_count() or 1)


def _decode_one(path: Path, hw: tuple[int, int] | None, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if hw is not None and im.format == "JPEG":
                im.draft(mode, (hw[1], hw[0]))  # DCT-domain downscale: much faster, never below the target
            im = im.convert(mode)
            if hw is not None and im.size != (hw[1], hw[0]):
                im = im.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)  # PIL's resize is antialiased
            return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot decode image {path}: {e}") from e


def _parallel_stack(files: Sequence[Path], read: Callable[[Path], np.ndarray], what: str) -> np.ndarray:
    first = read(files[0])
    out = np.empty((len(files), *first.shape), dtype=first.dtype)
    out[0] = first

    def work(i: int) -> None:
        a = read(files[i])
        if a.shape != first.shape:
            raise DataError(
                f"{what} {files[i]} has shape {a.shape} but {files[0]} has {first.shape}; "
                "pass size=N to resize every sample to N x N at decode time"
            )
        out[i] = a

    with ThreadPoolExecutor(_workers()) as ex:
        list(ex.map(work, range(1, len(files))))
    return out


def decode_images(files: Sequence[str | os.PathLike[str]], size: Size = None, mode: str = "RGB") -> Tensor:
    """Decode images to a uint8 tensor ``N x C x H x W`` (C = 1 for mode "L"), resized to ``size`` if given."""
    files = [Path(f) for f in files]
    if not files:
        raise DataError("no image files to decode")
    hw = _hw(size)
    out = _parallel_stack(files, lambda p: _decode_one(p, hw, mode), "image")
    t = torch.from_numpy(out)
    return t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()


def resize(x: Tensor, size: Size) -> Tensor:
    """Bilinear, antialiased resize of a float ``N x C x H x W`` tensor (no-op when already that size)."""
    hw = _hw(size)
    if hw is None or tuple(x.shape[-2:]) == hw:
        return x
    return F.interpolate(x, size=hw, mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)


def read_tiffs(files: Sequence[str | os.PathLike[str]], bands: int, scale: float, size: Size = None) -> Tensor:
    """Multi-band GeoTIFFs -> float32 ``N x bands x H x W``, divided by ``scale`` and clipped to [0, 1]."""
    import tifffile

    files = [Path(f) for f in files]
    if not files:
        raise DataError("no tif files to decode")

    def read(path: Path) -> np.ndarray:
        try:
            a = tifffile.imread(path)
        except Exception as e:  # tifffile raises many types for bad files
            raise DataError(f"cannot decode GeoTIFF {path}: {e}") from e
        if a.ndim == 3 and a.shape[-1] == bands:  # EuroSAT stores H x W x bands
            a = np.moveaxis(a, -1, 0)
        if a.ndim != 3 or a.shape[0] != bands:
            raise DataError(f"GeoTIFF {path} has shape {a.shape}; expected {bands} bands")
        return a.astype(np.float32)

    x = torch.from_numpy(_parallel_stack(files, read, "GeoTIFF")).div_(scale).clamp_(0, 1)
    return resize(x, size)


def read_idx(path: str | os.PathLike[str], ndim: int) -> np.ndarray:
    """Parse an (optionally gzipped) MNIST idx file of unsigned bytes, validating magic number and size."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path}: {e} (the file is corrupt or truncated; download it again)") from e
    head = 4 + 4 * ndim
    if len(data) < head or data[:3] != b"\x00\x00\x08" or data[3] != ndim:
        raise DataError(f"{path} is not an idx file of {ndim}-d unsigned bytes (bad magic number {data[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", data[4:head])
    expected = int(np.prod(dims))
    if len(data) - head != expected:
        found = len(data) - head
        raise DataError(f"{path} is truncated or padded: header says {dims} ({expected} bytes), found {found}")
    return np.frombuffer(data, dtype=np.uint8, offset=head).reshape(dims)
