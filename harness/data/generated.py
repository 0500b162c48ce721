"""Generated variants: deterministic given ``seed`` and built in memory in well under a second.

- ``rotated_digits``: RotatedMNIST (DomainBed): each angle is a domain holding a disjoint share.
- ``colored_digits``: Colored MNIST (IRM): binary label, spurious colour, per-environment correlation.
- ``corrupted_digits``: noise / blur / contrast at severities 1..5 plus a clean domain.
- ``synthetic_ms``: SYNTHETIC 13-band multispectral land cover, for when no real MS set exists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.data.dataset import ArrayDataset, to_float
from harness.data.layouts import S2_BANDS
from harness.data.registry import load, register_dataset
from harness.errors import UsageError


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _grey_source(source: str) -> ArrayDataset:
    base = load(source)
    if base.x.ndim != 4 or base.x.shape[1] != 1:
        raise UsageError(f"source {source!r} must be a 1-channel image set (mnist5k, digits, mnist, usps)")
    return ArrayDataset(to_float(base.x), base.y, base.classes, base.name, meta=base.meta)  # rotations resample


def _shares(n: int, k: int, g: torch.Generator) -> list[Tensor]:
    """k disjoint random index sets covering 0..n-1 (sizes differ by at most one)."""
    return list(torch.tensor_split(torch.randperm(n, generator=g), k))


def _derived_meta(base: ArrayDataset, **extra: object) -> dict[str, object]:
    return {
        "source": base.meta.get("source", "embedded"),
        "derived_from": base.name,
        "generated": True,
        "synthetic": False,
        "tier": base.meta.get("tier", "embedded"),
        **extra,
    }


@register_dataset(
    "rotated_digits",
    tier="embedded",
    count=5000,
    description="RotatedMNIST-style: mnist5k split into disjoint shares rotated by 0..75 deg, domain = angle",
)
def rotated_digits(
    source: str = "mnist5k", angles: Sequence[float] = (0, 15, 30, 45, 60, 75), seed: int = 0
) -> ArrayDataset:
    import torchvision.transforms.functional as TF  # lazy: importing torchvision costs ~1 s

    base, g = _grey_source(source), _gen(seed)
    xs, ys, ds = [], [], []
    for d, (angle, idx) in enumerate(zip(angles, _shares(len(base), len(angles), g))):
        xs.append(TF.rotate(base.x[idx], float(angle), interpolation=TF.InterpolationMode.BILINEAR, fill=[0.0]))
        ys.append(base.y[idx])
        ds.append(torch.full((len(idx),), d, dtype=torch.long))
    names = [f"{a:g}deg" for a in angles]
    meta = _derived_meta(base, angles=[float(a) for a in angles], seed=seed)
    return ArrayDataset(torch.cat(xs), torch.cat(ys), base.classes, "rotated_digits", torch.cat(ds), names, meta=meta)


COLORS = ("red", "green")


@register_dataset(
    "colored_digits",
    tier="embedded",
    count=5000,
    description="Colored-MNIST (IRM): label = digit>=5 with 25% noise, red/green colour spurious; "
    "envs p=0.9, 0.8 (train) and 0.1 (test)",
)
def colored_digits(
    source: str = "mnist5k",
    correlations: Sequence[float] = (0.9, 0.8, 0.1),
    label_noise: float = 0.25,
    test_envs: Sequence[int] = (2,),
    channels: int = 3,
    seed: int = 0,
) -> ArrayDataset:
    """Binary label ``y = (digit >= 5)``, flipped with probability ``label_noise``. Each environment
    (domain) gets a disjoint share; there the colour equals ``y`` with probability ``correlations[e]``.
    Images are RGB (``channels=3``, blue empty) or IRM's 2-channel red/green (``channels=2``):
    a red digit lives in channel 0, a green one in channel 1. ``group = y * 2 + colour`` (0 red, 1 green).
    """
    if channels not in (2, 3):
        raise UsageError(f"colored_digits: channels must be 2 or 3, got {channels}")
    base, g = _grey_source(source), _gen(seed)
    n_env = len(correlations)
    test_envs = sorted(e % n_env for e in test_envs)
    xs, ys, es, cs, digits = [], [], [], [], []
    for e, (p, idx) in enumerate(zip(correlations, _shares(len(base), n_env, g))):
        digit = base.y[idx]
        y = (digit >= 5).long() ^ (torch.rand(len(idx), generator=g) < label_noise).long()
        colour = torch.where(torch.rand(len(idx), generator=g) < p, y, 1 - y)
        img = torch.zeros(len(idx), channels, *base.x.shape[2:])
        img[torch.arange(len(idx)), colour] = base.x[idx, 0]
        xs.append(img)
        ys.append(y)
        cs.append(colour)
        digits.append(digit)
        es.append(torch.full((len(idx),), e, dtype=torch.long))
    y, colour = torch.cat(ys), torch.cat(cs)
    meta = _derived_meta(
        base,
        correlations=[float(p) for p in correlations],
        label_noise=label_noise,
        seed=seed,
        channels=["red", "green", "blue"][:channels],
        digit=torch.cat(digits),
        color=colour,
        train_domains=[e for e in range(n_env) if e not in test_envs],
        test_domains=test_envs,
    )
    return ArrayDataset(
        torch.cat(xs),
        y,
        ["0-4", "5-9"],
        "colored_digits",
        torch.cat(es),
        [f"env{e}_p{p:.2f}" for e, p in enumerate(correlations)],
        y * 2 + colour,
        [f"y{c}_{col}" for c in (0, 1) for col in COLORS],
        meta,
    )


# severity 1..5 parameters, ImageNet-C style but scaled for 28x28 digits
NOISE_STD = (0.08, 0.12, 0.18, 0.26, 0.38)
BLUR_SIGMA = (0.5, 0.8, 1.1, 1.5, 2.0)
CONTRAST = (0.5, 0.35, 0.25, 0.15, 0.08)  # factor towards each image's mean
CORRUPTIONS = ("noise", "blur", "contrast")


def corrupt(x: Tensor, kind: str, severity: int, g: torch.Generator) -> Tensor:
    """One corruption at severity 1..5 on images in [0, 1]; randomness comes only from ``g``."""
    s = severity - 1
    if kind == "noise":
        return (x + NOISE_STD[s] * torch.randn(x.shape, generator=g)).clamp(0, 1)
    if kind == "blur":
        import torchvision.transforms.functional as TF

        sigma = BLUR_SIGMA[s]
        k = 2 * math.ceil(3 * sigma) + 1
        return TF.gaussian_blur(x, [k, k], [sigma, sigma])
    if kind == "contrast":
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * CONTRAST[s] + mean
    raise UsageError(f"unknown corruption {kind!r}; choose from {CORRUPTIONS}")


@register_dataset(
    "corrupted_digits",
    tier="embedded",
    count=5000,
    description="mnist5k with noise/blur/contrast corruptions at severities 1-5; "
    "domain = clean or (corruption, severity)",
)
def corrupted_digits(
    source: str = "mnist5k",
    corruptions: Sequence[str] = CORRUPTIONS,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    disjoint: bool = True,
    seed: int = 0,
) -> ArrayDataset:
    """Domain 0 is ``"clean"``, then one domain per (corruption, severity), named like ``"blur_s3"``.
    ``disjoint=True`` gives each domain its own share of the source; ``False`` puts every source
    image in every domain (``len(source) * n_domains`` samples)."""
    base, g = _grey_source(source), _gen(seed)
    pairs = [("clean", 0)] + [(c, int(s)) for c in corruptions for s in severities]
    for c, s in pairs[1:]:
        if c not in CORRUPTIONS or not 1 <= s <= 5:
            raise UsageError(f"corrupted_digits: bad corruption {c!r} / severity {s}")
    idxs = _shares(len(base), len(pairs), g) if disjoint else [torch.arange(len(base))] * len(pairs)
    xs, ys, ds = [], [], []
    for d, ((kind, sev), idx) in enumerate(zip(pairs, idxs)):
        xs.append(base.x[idx] if kind == "clean" else corrupt(base.x[idx], kind, sev, g))
        ys.append(base.y[idx])
        ds.append(torch.full((len(idx),), d, dtype=torch.long))
    names = [c if c == "clean" else f"{c}_s{s}" for c, s in pairs]
    meta = _derived_meta(base, corruption=[c for c, _ in pairs], severity=[s for _, s in pairs], seed=seed)
    return ArrayDataset(torch.cat(xs), torch.cat(ys), base.classes, "corrupted_digits", torch.cat(ds), names, meta=meta)


# ---- SYNTHETIC multispectral land cover ----------------------------------------------------------

# Rough top-of-atmosphere reflectance per Sentinel-2 band (B01 ... B12, see S2_BANDS): vegetation has the
# red edge and a high NIR plateau, water is dark beyond green, snow is bright in the visible and dark in
# SWIR, soil rises steadily; B10 (cirrus, 1375 nm) sees almost no surface. Shapes, not measurements.
MS_CLASSES = ["water", "forest", "grassland", "cropland", "urban", "bare_soil", "snow_ice"]
MS_SIGNATURES = torch.tensor(
    [
        [0.09, 0.08, 0.07, 0.05, 0.04, 0.03, 0.03, 0.02, 0.02, 0.01, 0.002, 0.01, 0.005],
        [0.03, 0.03, 0.06, 0.03, 0.08, 0.22, 0.28, 0.30, 0.31, 0.25, 0.004, 0.15, 0.07],
        [0.04, 0.05, 0.09, 0.06, 0.12, 0.28, 0.34, 0.36, 0.37, 0.30, 0.005, 0.24, 0.13],
        [0.06, 0.07, 0.10, 0.10, 0.15, 0.23, 0.27, 0.29, 0.30, 0.25, 0.005, 0.27, 0.18],
        [0.12, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.18, 0.18, 0.15, 0.006, 0.20, 0.18],
        [0.10, 0.12, 0.16, 0.21, 0.24, 0.26, 0.28, 0.30, 0.31, 0.27, 0.007, 0.36, 0.31],
        [0.85, 0.86, 0.84, 0.80, 0.78, 0.76, 0.74, 0.70, 0.68, 0.55, 0.020, 0.08, 0.05],
    ]
)
MS_WAVELENGTH_NM = torch.tensor([443, 490, 560, 665, 705, 740, 783, 842, 865, 945, 1375, 1610, 2190.0])
# spatial texture per class: (low-res grid sizes of the noise octaves, amplitude, blocky?)
MS_TEXTURE = [
    ((4,), 0.05, False),
    ((8, 16), 0.25, False),
    ((4, 8), 0.15, False),
    ((4,), 0.15, True),
    ((8, 16), 0.35, True),
    ((4, 8), 0.15, False),
    ((4,), 0.08, False),
]
MS_SHIFTS = ("clear", "haze")


def _noise_field(n: int, grid: int, size: int, g: torch.Generator, blocky: bool = False) -> Tensor:
    low = torch.randn(n, 1, grid, grid, generator=g)
    if blocky:  # parcels, buildings: piecewise-constant patches
        return F.interpolate(low, size=(size, size), mode="nearest")
    return F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)


@register_dataset(
    "synthetic_ms",
    tier="embedded",
    count=1400,
    synthetic=True,
    description="SYNTHETIC procedurally generated 13-band (Sentinel-2 order) land cover, 7 classes, 32x32; "
    "domain = clear/haze. Not real imagery",
)
def synthetic_ms(
    n_per_class: int = 200, size: int = 32, shifts: Sequence[str] = MS_SHIFTS, seed: int = 0
) -> ArrayDataset:
    """SYNTHETIC. Each sample mixes its class signature with a random other class through a smooth
    abundance field (mixed pixels), modulated by class-specific texture (striped/blocky fields for
    cropland, blocky urban, smooth water), with per-sample brightness, per-band jitter and sensor noise.
    Domain "haze" adds wavelength-dependent path radiance (strong in blue, nil in SWIR)."""
    for s in shifts:
        if s not in MS_SHIFTS:
            raise UsageError(f"synthetic_ms: unknown shift {s!r}; choose from {MS_SHIFTS}")
    g = _gen(seed)
    k, n_bands = len(MS_CLASSES), len(S2_BANDS)
    y = torch.arange(k).repeat_interleave(n_per_class)
    n = len(y)
    other = (y + torch.randint(1, k, (n,), generator=g)) % k  # a different class for mixed pixels
    abundance = torch.sigmoid(3 * (_noise_field(n, 4, size, g) + 1.2))  # mostly ~1, some mixed patches
    texture = torch.zeros(n, 1, size, size)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for c, (grids, amp, blocky) in enumerate(MS_TEXTURE):
        m = y == c
        k_c = int(m.sum())
        t = amp * sum(_noise_field(k_c, gr, size, g, blocky) for gr in grids) / len(grids)
        if MS_CLASSES[c] == "cropland":  # tilled rows at a random angle and frequency
            theta = torch.rand(k_c, 1, 1, generator=g) * math.pi
            freq = 2 + 4 * torch.rand(k_c, 1, 1, generator=g)
            t += 0.1 * torch.sin(2 * math.pi * freq * (xx * theta.cos() + yy * theta.sin()) / size).unsqueeze(1)
        texture[m] = t
    gain = 0.85 + 0.3 * torch.rand(n, 1, 1, 1, generator=g)
    band_jitter = 1 + 0.03 * torch.randn(n, n_bands, 1, 1, generator=g)
    sig = MS_SIGNATURES[y].view(n, n_bands, 1, 1) * band_jitter
    mix = abundance * sig + (1 - abundance) * MS_SIGNATURES[other].view(n, n_bands, 1, 1)
    x = mix * (1 + texture) * gain + 0.005 * torch.randn(n, n_bands, size, size, generator=g)
    domain = torch.randint(len(shifts), (n,), generator=g)
    haze_amount = 0.03 + 0.09 * torch.rand(n, 1, 1, 1, generator=g)
    haze = haze_amount * (443.0 / MS_WAVELENGTH_NM).pow(2).view(1, n_bands, 1, 1)
    is_hazy = torch.tensor([s == "haze" for s in shifts])[domain].view(n, 1, 1, 1)
    x = torch.where(is_hazy, 0.9 * x + haze, x).clamp_(0, 1).float()
    meta = {
        "source": "embedded",
        "synthetic": True,
        "generated": True,
        "tier": "embedded",
        "bands": S2_BANDS,
        "seed": seed,
        "note": "SYNTHETIC: procedurally generated, not real satellite imagery",
    }
    return ArrayDataset(x, y, list(MS_CLASSES), "synthetic_ms", domain, list(shifts), meta=meta)
