"""The augmentation policies: contract (shape, dtype, device, range), per-sample draws, seeding, channels, errors."""

from __future__ import annotations

import json

import pytest
import torch

from harness.core.augment import get_policy, policy_names
from harness.errors import DataError, UsageError

NONTRIVIAL = [n for n in policy_names() if n != "none"]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(n: int = 16, c: int = 3, side: int = 32, seed: int = 1) -> torch.Tensor:
    """``n`` copies of one random image, so any difference between outputs comes from the augmentation."""
    one = torch.rand(1, c, side, side, generator=torch.Generator().manual_seed(seed))
    return one.expand(n, c, side, side).contiguous()


def _distinct(y: torch.Tensor) -> int:
    return len(torch.unique(y.flatten(1), dim=0))


def test_registry_names() -> None:
    assert {"none", "flip-crop", "domainbed", "randaugment", "ssl"} <= set(policy_names())


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(UsageError, match="unknown augmentation policy 'autoaug'.*domainbed.*flip-crop"):
        get_policy("autoaug", (32, 32))


@pytest.mark.parametrize("name", policy_names())
@pytest.mark.parametrize("side", [8, 32, 96])
def test_contract_shape_dtype_device_range(name: str, side: int) -> None:
    x = torch.rand(8, 3, side, side, generator=_gen(3))
    x[0], x[1] = 0.0, 1.0  # the range ends, where resampling error would spill over
    y = get_policy(name, (side, side))(x, _gen())
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_float64_keeps_dtype() -> None:
    x = _batch().double()
    assert get_policy("domainbed", (32, 32))(x, _gen()).dtype == torch.float64


@pytest.mark.parametrize("name", NONTRIVIAL)
@pytest.mark.parametrize("side", [32, 96])
def test_each_sample_gets_its_own_draw(name: str, side: int) -> None:
    y = get_policy(name, (side, side))(_batch(side=side), _gen())
    # one draw per batch would give a single distinct output; per-sample draws give nearly 16
    assert _distinct(y) >= 12


def test_randaugment_draws_its_ops_per_sample() -> None:
    # kornia's own RandAugment picks the op once per batch: at most 2 distinct outputs (a symmetric op's sign);
    # here each sample picks among 15 ops, giving about 20 distinct outcomes over 64 samples
    policy = get_policy("randaugment", (32, 32))
    randaugment = policy.steps[0].rgb
    with torch.random.fork_rng():
        torch.manual_seed(0)
        y = randaugment(_batch(n=64))
    assert _distinct(y) >= 8


@pytest.mark.parametrize("name", policy_names())
def test_same_seed_reproduces_different_seeds_differ(name: str) -> None:
    policy, x = get_policy(name, (32, 32)), _batch()
    a, b, c = policy(x, _gen(7)), policy(x, _gen(7)), policy(x, _gen(8))
    assert torch.equal(a, b)
    assert torch.equal(a, c) == (name == "none")


@pytest.mark.parametrize("name", NONTRIVIAL)
def test_generator_advances_so_batches_differ(name: str) -> None:
    policy, x, g = get_policy(name, (32, 32)), _batch(), _gen()
    before = g.get_state()
    first, second = policy(x, g), policy(x, g)
    assert not torch.equal(g.get_state(), before)
    assert not torch.equal(first, second)


@pytest.mark.parametrize("name", policy_names())
def test_global_rng_untouched(name: str) -> None:
    policy, x = get_policy(name, (32, 32)), _batch()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    policy(x, _gen())
    assert torch.equal(torch.get_rng_state(), state)


def test_none_is_the_identity_and_leaves_the_generator() -> None:
    x, g = torch.rand(4, 3, 16, 16), _gen()
    state = g.get_state()
    assert torch.equal(get_policy("none", (16, 16))(x, g), x)
    assert torch.equal(g.get_state(), state)


@pytest.mark.parametrize("name", policy_names())
@pytest.mark.parametrize("channels", [1, 13])
def test_non_rgb_input_gets_geometric_steps(name: str, channels: int) -> None:
    x = _batch(c=channels)
    y = get_policy(name, (32, 32))(x, _gen())
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    if name != "none":
        assert _distinct(y) >= 12


def test_non_rgb_skips_colour_ops() -> None:
    # a constant image is unchanged by every geometric op away from the padded border, so any change
    # of its value would come from a colour op that should have been skipped
    x = torch.full((16, 13, 32, 32), 0.5)
    y = get_policy("domainbed", (32, 32))(x, _gen())
    assert torch.allclose(y, x)
    rgb = get_policy("domainbed", (32, 32))(torch.full((16, 3, 32, 32), 0.5), _gen())
    assert not torch.allclose(rgb, torch.full_like(rgb, 0.5))


def test_describe_is_json_and_names_non_rgb_handling() -> None:
    for name in policy_names():
        info = get_policy(name, (96, 96)).describe()
        assert info["name"] == name and info["image_size"] == [96, 96]
        json.dumps(info)
    steps = {s["op"]: s for s in get_policy("domainbed", (96, 96)).describe()["steps"]}
    assert steps["RandomResizedCrop"]["scale"] == [0.7, 1.0] and steps["RandomResizedCrop"]["non_rgb"] == "applied"
    assert steps["ColorJitter"]["hue"] == 0.3 and steps["ColorJitter"]["non_rgb"] == "skipped"
    assert steps["RandomGrayscale"]["p"] == 0.1


def test_size_dependent_choices() -> None:
    def first(name: str, side: int) -> dict:
        return get_policy(name, (side, side)).describe()["steps"][0]

    assert first("flip-crop", 32) == {"op": "RandomCrop", "padding": 4, "fill": 0.0, "non_rgb": "applied"}
    assert first("flip-crop", 8)["padding"] == 1
    assert first("flip-crop", 96)["op"] == "RandomResizedCrop" and first("flip-crop", 96)["scale"] == [0.8, 1.0]
    assert first("ssl", 32)["scale"] == [0.2, 1.0] and first("ssl", 224)["scale"] == [0.08, 1.0]
    blur = get_policy("ssl", (224, 224)).describe()["steps"][-1]
    assert blur["op"] == "RandomGaussianBlur" and blur["kernel_size"] == 23


def test_ssl_views_differ() -> None:
    policy, x = get_policy("ssl", (32, 32)), _batch(n=4)
    views = policy.views(x, 3, _gen())
    assert len(views) == 3 and all(v.shape == x.shape for v in views)
    assert not torch.equal(views[0], views[1]) and not torch.equal(views[1], views[2])
    assert torch.equal(views[0], policy.views(x, 2, _gen())[0])


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.rand(3, 32, 32), "N x C x H x W"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "float images"),
        (torch.rand(2, 3, 16, 16), "built for 32x32 images, got 16x16"),
    ],
)
def test_bad_input_is_a_clear_error(x: torch.Tensor, match: str) -> None:
    with pytest.raises(DataError, match=match):
        get_policy("flip-crop", (32, 32))(x, _gen())


def test_bad_arguments() -> None:
    with pytest.raises(UsageError, match="image_size"):
        get_policy("ssl", (32,))
    with pytest.raises(UsageError, match="n >= 1"):
        get_policy("ssl", (32, 32)).views(_batch(), 0, _gen())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_keeps_device_reproduces_and_leaves_cuda_rng() -> None:
    policy, x = get_policy("domainbed", (32, 32)), _batch().cuda()
    cuda_state = torch.cuda.get_rng_state()
    a = policy(x, torch.Generator(device="cuda").manual_seed(0))
    b = policy(x, torch.Generator(device="cuda").manual_seed(0))
    assert a.device == x.device and torch.equal(a, b)
    assert torch.equal(torch.cuda.get_rng_state(), cuda_state)
    assert _distinct(a) >= 12
