"""The two-view augmentations and the Lab split (src/data/views.py) on rendered digits: shapes, range,
determinism per seed, the ops against their definitions, Lab against known colours."""
import math

import numpy as np
import pytest

from src.data import views
from src.data.dataset import DigitRenderer
from src.data.mnist import load_split

IDENTITY = views.ViewSpec(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), blur_probability=0.0,
                          jitter_probability=0.0, grayscale_probability=0.0)


@pytest.fixture(scope="module", params=[(64, True), (28, False)], ids=["colour64", "grey28"])
def digits(request):
    """16 real digits rendered as the task renders them: [16, C, S, S] in [-1, 1]."""
    size, color = request.param
    images, _ = load_split("", "train")
    return DigitRenderer(size, color)(images[:16], np.random.default_rng(0))


def test_views_keep_shape_dtype_and_range(digits):
    for view in views.two_views(digits, np.random.default_rng(1)):
        assert view.shape == digits.shape and view.dtype == np.float32
        assert view.min() >= -1.0 and view.max() <= 1.0


def test_same_seed_same_views_other_seed_others(digits):
    first = views.two_views(digits, np.random.default_rng(5))
    again = views.two_views(digits, np.random.default_rng(5))
    other = views.two_views(digits, np.random.default_rng(6))
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a, b)
        assert np.abs(a - c).mean() > 0.02


def test_the_two_views_differ_from_each_other_and_the_image(digits):
    one, two = views.two_views(digits, np.random.default_rng(2))
    per_image = np.abs(one - two).reshape(len(one), -1).mean(1)
    assert (per_image > 0).all() and per_image.mean() > 0.05
    assert np.abs(one - digits).mean() > 0.05


def test_identity_spec_returns_the_image(digits):
    np.testing.assert_allclose(views.augment(digits, np.random.default_rng(3), IDENTITY), digits, atol=1e-6)


def test_blur_spreads_a_point_as_the_gaussian():
    point = np.zeros((1, 1, 21, 21), np.float32)
    point[0, 0, 10, 10] = 1.0
    spec = views.ViewSpec(blur_probability=1.0, blur_sigma=(1.5, 1.5))
    blurred = views.blur(point.copy(), np.random.default_rng(0), spec)[0, 0]
    taps = np.exp(-0.5 * (np.arange(-10, 11) / 1.5) ** 2)
    taps /= taps.sum()
    np.testing.assert_allclose(blurred, np.outer(taps, taps), atol=1e-6)
    unblurred = views.blur(point.copy(), np.random.default_rng(0), views.ViewSpec(blur_probability=0.0))
    np.testing.assert_array_equal(unblurred, point)


def test_crop_resamples_a_ramp_exactly():
    size = 32
    ramp = np.broadcast_to(np.arange(size, dtype=np.float32), (2, size, 1, size)).copy()   # [M, H, C, W]
    left, width = np.array([3.0, 0.0]), np.array([16.0, 32.0])
    taps = views.bilinear_taps(left, width, size)
    out = views.resample_leading(ramp.transpose(0, 3, 1, 2), taps)                  # along W
    expected = np.clip(left[:, None] + (np.arange(size) + 0.5) * width[:, None] / size - 0.5, 0, size - 1)
    np.testing.assert_allclose(out[:, :, 0, 0], expected, atol=1e-5)                # bilinear keeps lines


def test_crop_boxes_fit_and_follow_the_scale():
    top, left, height, width = views.crop_boxes(np.random.default_rng(0), 2000, 64, (0.4, 1.0), (0.75, 4 / 3))
    assert (top >= 0).all() and (left >= 0).all() and (top + height <= 64).all() and (left + width <= 64).all()
    share = height * width / 64 ** 2
    assert share.min() >= 0.4 - 1e-9 and share.max() <= 1.0 + 1e-9
    assert (width / height).min() >= 0.75 - 1e-9 and (width / height).max() <= 4 / 3 + 1e-9


def test_grayscale_makes_equal_channels():
    pixels = np.random.default_rng(0).random((4, 3, 8, 8), dtype=np.float32)
    spec = views.ViewSpec(jitter_probability=0.0, grayscale_probability=1.0)
    grey = views.colour(pixels, np.random.default_rng(0), spec)
    np.testing.assert_allclose(grey[:, 0], np.einsum("c,mchw->mhw", views.LUMA, pixels), atol=1e-6)
    np.testing.assert_allclose(grey[:, 1], grey[:, 0], atol=1e-6)


def test_hue_rotation_keeps_greys_and_a_third_turn_cycles_the_channels():
    turn = views.hue_rotation(np.array([2 * math.pi / 3, 0.7]))
    np.testing.assert_allclose(turn[0] @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(turn[1] @ np.ones(3), np.ones(3), atol=1e-12)
    np.testing.assert_allclose(turn[1] @ turn[1].T, np.eye(3), atol=1e-12)


def stepwise_jitter(pixels, draw, spec):
    """torchvision's definitions one after the other (fixed order, no clipping between steps)."""
    def grey(x):
        return np.einsum("c,mchw->mhw", views.LUMA, x)[:, None]
    def factor(strength, k):
        return (1 + strength * draw[:, k])[:, None, None, None]
    x = pixels * factor(spec.brightness, 0)
    c = factor(spec.contrast, 1)
    x = c * x + (1 - c) * grey(x).mean((2, 3), keepdims=True)
    s = factor(spec.saturation, 2)
    x = s * x + (1 - s) * grey(x)
    x = np.einsum("mij,mjhw->mihw", views.hue_rotation(2 * math.pi * spec.hue * draw[:, 3]), x)
    return np.clip(x, 0, 1)


def test_colour_jitter_is_the_stepwise_definition():
    pixels = np.random.default_rng(0).random((6, 3, 8, 8)).astype(np.float32)
    spec = views.ViewSpec(jitter_probability=1.0, grayscale_probability=0.0)
    draw = np.random.default_rng(4).uniform(-1, 1, (6, 4))       # colour_maps' first draw
    got = views.colour(pixels, np.random.default_rng(4), spec)
    np.testing.assert_allclose(got, stepwise_jitter(pixels, draw, spec), atol=1e-5)


@pytest.mark.parametrize("change,message", [
    (dict(crop_scale=(0.0, 1.0)), r"crop_scale must be \(low, high\) with 0.0 < low <= high <= 1.0, got \(0.0, 1.0\)"),
    (dict(crop_scale=(0.8, 0.4)), "crop_scale must be"), (dict(crop_ratio=(2.0, 1.0)), "crop_ratio must be"),
    (dict(blur_sigma=(0.0, 1.0)), "blur_sigma must be"),
    (dict(jitter_probability=1.5), r"jitter_probability must be in \[0, 1\]"),
    (dict(grayscale_probability=-0.1), "grayscale_probability"),
    (dict(brightness=1.2), r"brightness must be in \[0, 1.0\]"),
    (dict(hue=0.6), r"hue must be in \[0, 0.5\]")])
def test_impossible_strengths_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        views.ViewSpec(**change)


# sRGB -> CIE Lab (D65), the values of B. Lindbloom's colour calculator
KNOWN_LAB = [((1, 1, 1), (100.0, 0.0, 0.0)), ((0, 0, 0), (0.0, 0.0, 0.0)), ((1, 0, 0), (53.2408, 80.0925, 67.2032)),
             ((0, 1, 0), (87.7347, -86.1827, 83.1793)), ((0, 0, 1), (32.2970, 79.1875, -107.8602)),
             ((0.5, 0.5, 0.5), (53.3890, 0.0, 0.0))]


@pytest.mark.parametrize("rgb,lab", KNOWN_LAB)
def test_lab_of_known_colours(rgb, lab):
    got = views.srgb_to_lab(np.array(rgb, np.float64).reshape(3, 1, 1)).reshape(3)
    np.testing.assert_allclose(got, lab, atol=1e-3)


def test_lab_views_of_colour_digits(digits):
    if digits.shape[1] == 1:
        with pytest.raises(ValueError, match=r"colour images \[M, 3, S, S\], got shape \(16, 1, 28, 28\)"):
            views.lab_views(digits)
        return
    lightness, chroma = views.lab_views(digits)
    assert lightness.shape == (16, 1, 64, 64) and chroma.shape == (16, 2, 64, 64)
    assert lightness.dtype == chroma.dtype == np.float32
    assert -1 <= lightness.min() and lightness.max() <= 1 and np.abs(chroma).max() <= 1
    grey = np.repeat(digits[:, :1], 3, 1)           # a grey image has no chroma
    assert np.abs(views.lab_views(grey)[1]).max() < 1e-5
