"""Each resize, crop and normalisation policy of harness.core.preprocess against tensors computed by hand."""

from __future__ import annotations

import pytest
import torch

from harness.core.preprocess import Geometry, Preprocess, center_crop, geometry_grid, imagenet_stats, minmax, resize
from harness.errors import DataError, UsageError


def test_resize_up_is_plain_bilinear_with_half_pixel_centres() -> None:
    # 2 -> 4: output pixel centres sit at input coordinates -0.25, 0.25, 0.75, 1.25 (edges clamp), so a row
    # [a, b] becomes [a, 3a/4 + b/4, a/4 + 3b/4, b].
    x = torch.tensor([[0.0, 4.0], [8.0, 12.0]]).view(1, 1, 2, 2)
    expected = torch.tensor([[0.0, 1.0, 3.0, 4.0], [2.0, 3.0, 5.0, 6.0], [6.0, 7.0, 9.0, 10.0], [8.0, 9.0, 11.0, 12.0]])
    torch.testing.assert_close(resize(x, 4)[0, 0], expected)


def test_resize_down_is_antialiased() -> None:
    # 4 -> 2: a triangle filter of half-width 2 input pixels around centres 1.0 and 3.0: weights 3/4, 3/4, 1/4
    # (normalised: 3/7, 3/7, 1/7), so [a, b, c, d] -> [(3a + 3b + c) / 7, (b + 3c + 3d) / 7]. Plain bilinear
    # would give [(a + b) / 2, (c + d) / 2] and alias.
    row = torch.tensor([0.0, 7.0, 14.0, 70.0])
    x = row.view(1, 1, 1, 4).expand(1, 1, 4, 4).clone()
    out = resize(x, 2)[0, 0]
    torch.testing.assert_close(out, torch.tensor([[5.0, 37.0], [5.0, 37.0]]))


def test_resize_to_own_size_is_identity() -> None:
    x = torch.rand(2, 3, 8, 8)
    assert resize(x, 8) is x


def test_center_crop_offsets_follow_torchvision() -> None:
    x = torch.arange(36.0).view(1, 1, 6, 6)
    torch.testing.assert_close(center_crop(x, 2)[0, 0], torch.tensor([[14.0, 15.0], [20.0, 21.0]]))  # top = 2
    y = torch.arange(25.0).view(1, 1, 5, 5)
    # top = round((5 - 2) / 2) = round(1.5) = 2 (Python rounds half to even, as torchvision's int(round(...)))
    torch.testing.assert_close(center_crop(y, 2)[0, 0], torch.tensor([[12.0, 13.0], [17.0, 18.0]]))
    torch.testing.assert_close(center_crop(y, 3)[0, 0], torch.tensor([[6.0, 7.0, 8.0], [11.0, 12.0, 13.0],
                                                                      [16.0, 17.0, 18.0]]))
    with pytest.raises(UsageError, match="larger than"):
        center_crop(y, 6)


def test_minmax_per_image_and_channel() -> None:
    x = torch.tensor([[[[2.0, 4.0], [6.0, 10.0]], [[5.0, 5.0], [5.0, 5.0]]],
                      [[[0.0, 1.0], [0.0, 1.0]], [[-1.0, 0.0], [1.0, 3.0]]]])
    expected = torch.tensor([[[[0.0, 0.25], [0.5, 1.0]], [[0.0, 0.0], [0.0, 0.0]]],  # constant channel -> 0
                             [[[0.0, 1.0], [0.0, 1.0]], [[0.0, 0.25], [0.5, 1.0]]]])
    torch.testing.assert_close(minmax(x), expected)


def test_divide_scales_uint8_by_255_and_passes_floats() -> None:
    x = torch.tensor([0, 51, 255, 102], dtype=torch.uint8).view(1, 1, 2, 2)
    p = Preprocess.make("native", "divide", 1)
    torch.testing.assert_close(p(x), torch.tensor([[[[0.0, 0.2], [1.0, 0.4]]]]))
    f = torch.tensor([[[[0.25, 0.5]]]])
    torch.testing.assert_close(p(f), f)


def test_dataset_normalisation_uses_given_per_channel_stats() -> None:
    x = torch.tensor([[[[51, 102]], [[0, 255]]]], dtype=torch.uint8)  # channel 0: 0.2, 0.4; channel 1: 0, 1
    p = Preprocess.make("native", "dataset", 2, ((0.3, 0.5), (0.1, 0.5)))
    torch.testing.assert_close(p(x), torch.tensor([[[[-1.0, 1.0]], [[-1.0, 1.0]]]]))


def test_imagenet_normalisation_rgb_and_cyclic_for_multispectral() -> None:
    x = torch.full((1, 3, 1, 1), 0.5)
    p = Preprocess.make("native", "imagenet", 3)
    expected = torch.tensor([(0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.5 - 0.406) / 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(p(x), expected)
    mean, std = imagenet_stats(13)
    assert mean[3] == 0.485 and mean[12] == 0.485 and std[5] == 0.225 and len(mean) == 13
    out = Preprocess.make("native", "imagenet", 13)(torch.full((1, 13, 1, 1), 0.5))
    torch.testing.assert_close(out[0, 3, 0, 0], expected[0, 0, 0, 0])


def test_geometry_then_normalisation_order() -> None:
    # resize 2 -> 4 then min-max: the bilinear row [0, 1, 3, 4] stretches to [0, .25, .75, 1] per image
    x = torch.tensor([[0.0, 4.0], [0.0, 4.0]]).view(1, 1, 2, 2)
    out = Preprocess.make("resize4", "minmax", 1)(x)
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))


def test_geometry_grid_drops_duplicates_and_impossible_crops() -> None:
    names = [g.name for g in geometry_grid(("native", 64, 128, 224), (64, 64))]
    assert names == ["native", "resize128", "resize224"]  # resize64 == crop64 == native; no crop above 64 px
    names = [g.name for g in geometry_grid(("native", 64, 128, 224), (256, 256))]
    assert names == ["native", "resize64", "resize128", "resize224", "crop64", "crop128", "crop224"]
    assert Geometry.parse("crop128") == Geometry("crop", 128)
    with pytest.raises(UsageError):
        Geometry.parse("zoom2")


def test_bad_policies_are_clear_errors() -> None:
    with pytest.raises(UsageError, match="choose one of"):
        Preprocess.make("native", "zscore", 3)
    with pytest.raises(UsageError, match="needs the dataset"):
        Preprocess.make("native", "dataset", 3)
    with pytest.raises(UsageError, match="2 channels, the data 3"):
        Preprocess.make("native", "dataset", 3, ((0.1, 0.2), (1.0, 1.0)))
    with pytest.raises(DataError, match=r"channel\(s\) \[1\] are constant"):
        Preprocess.make("native", "dataset", 2, ((0.1, 0.2), (1.0, 0.0)))
