"""Two random views of each digit image (SimCLR, SupCon, the pairwise losses) and the Lab split (CMC).

Images are model inputs as src/data/dataset.py renders them: float32 [M, C, S, S] in [-1, 1],
C = 3 (64x64 colour digits on a texture) or 1 (28x28 grey digits). Every random number comes
from the numpy Generator the caller passes, so a batch's views are a pure function of its seed,
as the batches themselves are; every draw is made whatever its outcome, so one op's probability
never shifts the numbers of the next. A view is made in two passes over the pixels:

1. geometry: a random resized crop (area share `crop_scale`, aspect ratio `crop_ratio`, sampled
   as torchvision does; bilinear, pixel centres at +0.5, the box in fractional pixels) and, with
   `blur_probability` (0 by default), a separable Gaussian blur;
2. colour, per image one affine map of the channels: with `jitter_probability` brightness,
   contrast, saturation and hue (in that order; torchvision draws a random order and clips after
   each step, here the composed map is clipped once at the end), then with
   `grayscale_probability` grey (ITU-R 601 luma, as PIL and torchvision). Hue turns the colours
   about the grey axis of RGB (a rotation, keeping greys grey and the mean) instead of shifting
   HSV hue. Grey images get brightness and contrast only.

No flips and no large rotations: digits are not mirror- or rotation-invariant (a mirrored 2, 3, 7
or 9 is no digit a reader writes, and a half turn makes a 6 of a 9), so invariance to them would
spend the codes on glyphs that never occur and could merge classes.

lab_views splits colour images into CMC's two views: L and ab of CIE Lab (D65), from sRGB by the
IEC 61966-2-1 transfer function and the sRGB -> XYZ matrix (B. Lindbloom's values), scaled to
about [-1, 1]: L / 50 - 1 and ab / AB_SCALE.
"""
import math
from dataclasses import dataclass

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], np.float32)   # ITU-R 601, PIL's convert("L")
CROP_TRIES = 10  # torchvision's RandomResizedCrop tries 10 boxes, then falls back to the whole image

SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
D65_WHITE = np.array([0.95047, 1.0, 1.08883])   # the matrix's rows sum to it: white maps to L 100, a = b = 0
LAB_EPSILON = (6 / 29) ** 3                     # CIE: below it f(t) is linear
AB_SCALE = 110.0  # a and b of the sRGB gamut lie within +-108


@dataclass(frozen=True)
class ViewSpec:
    """The augmentation's strengths (the defaults: SimCLR's probabilities, SupContrast's CIFAR jitter)."""
    crop_scale: tuple = (0.4, 1.0)   # smaller crops of a digit that fills the image keep one stroke
    crop_ratio: tuple = (3 / 4, 4 / 3)
    blur_probability: float = 0.0    # off, as SimCLR on CIFAR-10's small images (its appendix B.9)
    blur_sigma: tuple = (0.1, 1.0)   # pixels of the output; strokes are 2-3 px wide at 28, ~5 at 64
    jitter_probability: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1                 # share of a full turn
    grayscale_probability: float = 0.2

    def __post_init__(self):
        check_spec(self)


def check_spec(spec):
    """ValueError naming the first impossible strength (a spec is built from user config keys)."""
    ranges = {"crop_scale": (0.0, 1.0), "crop_ratio": (0.0, math.inf), "blur_sigma": (0.0, math.inf)}
    for name, (lo, hi) in ranges.items():
        low, high = getattr(spec, name)
        if not lo < low <= high <= hi:
            raise ValueError(f"{name} must be (low, high) with {lo} < low <= high <= {hi}, got {(low, high)}")
    for name in ("blur_probability", "jitter_probability", "grayscale_probability"):
        if not 0.0 <= getattr(spec, name) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {getattr(spec, name)}")
    for name, hi in (("brightness", 1.0), ("contrast", 1.0), ("saturation", 1.0), ("hue", 0.5)):
        if not 0.0 <= getattr(spec, name) <= hi:
            raise ValueError(f"{name} must be in [0, {hi}] (a factor 1 +- it, kept >= 0), got {getattr(spec, name)}")


def crop_boxes(rng, count, size, scale, ratio):
    """(top, left, height, width) float arrays [count]: torchvision's RandomResizedCrop sampling."""
    area = rng.uniform(scale[0], scale[1], (count, CROP_TRIES)) * size * size
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), (count, CROP_TRIES)))
    width, height = np.sqrt(area * aspect), np.sqrt(area / aspect)
    fits = (width <= size) & (height <= size)
    first, found = fits.argmax(1), fits.any(1)
    rows = np.arange(count)
    width = np.where(found, width[rows, first], size)
    height = np.where(found, height[rows, first], size)
    top, left = rng.random(count) * (size - height), rng.random(count) * (size - width)
    return top, left, height, width


def bilinear_taps(start, length, size):
    """(lower, upper, weight of upper) [M, size]: output pixel j reads source position
    start + (j + 0.5) * length / size - 0.5 (half-pixel centres, as src.data.dataset.resize_matrix)."""
    pos = np.clip(start[:, None] + (np.arange(size) + 0.5) * length[:, None] / size - 0.5, 0, size - 1)
    lower = np.floor(pos).astype(np.intp)
    return lower, np.minimum(lower + 1, size - 1), (pos - lower).astype(np.float32)


def resample_leading(pixels, taps):
    """Bilinear resampling of axis 1 of pixels [M, S, ...] at the taps. Gathering whole trailing
    blocks was the fastest form measured on a 2-core CPU (before [S, S] matrix products per image
    and take_along_axis on the last axis)."""
    lower, upper, weight = taps
    image = np.arange(len(pixels))[:, None]
    weight = weight.reshape(weight.shape + (1,) * (pixels.ndim - 2))
    return pixels[image, lower] * (1 - weight) + pixels[image, upper] * weight


def blur_matrices(sigma, size):
    """Gaussian blur as [K, size, size] matrices, one per sigma, rows renormalised at the border
    (so the mean brightness is kept)."""
    offset = np.arange(size, dtype=np.float32)
    kernel = np.exp(-0.5 * ((offset[:, None] - offset[None, :]) / sigma[:, None, None]) ** 2)
    return kernel / kernel.sum(-1, keepdims=True)


def blur(pixels, rng, spec):
    """With blur_probability per image a separable Gaussian blur, sigma drawn in blur_sigma (pixels)."""
    count, size = len(pixels), pixels.shape[-1]
    sigma = rng.uniform(spec.blur_sigma[0], spec.blur_sigma[1], count).astype(np.float32)
    chosen = np.flatnonzero(rng.random(count) < spec.blur_probability)
    if len(chosen):
        kernel = blur_matrices(sigma[chosen], size)[:, None]
        pixels[chosen] = kernel @ pixels[chosen] @ kernel.transpose(0, 1, 3, 2)
    return pixels


def geometry(pixels, rng, spec):
    """Random resized crop, then blur, of pixels [M, C, S, S] in [0, 1] (a new array)."""
    count, size = len(pixels), pixels.shape[-1]
    top, left, height, width = crop_boxes(rng, count, size, spec.crop_scale, spec.crop_ratio)
    out = resample_leading(pixels.transpose(0, 3, 1, 2), bilinear_taps(left, width, size))  # [M, W, C, H]
    out = resample_leading(out.transpose(0, 3, 1, 2), bilinear_taps(top, height, size))     # [M, H, W, C]
    return blur(np.ascontiguousarray(out.transpose(0, 3, 1, 2)), rng, spec)


def hue_rotation(angle):
    """[M, 3, 3] rotations of RGB about the grey axis (Rodrigues' formula), angle in radians."""
    axis = np.full(3, 1 / math.sqrt(3))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    return cos * np.eye(3) + sin * cross + (1 - cos) * np.outer(axis, axis)


def colour_maps(rng, count, channels, spec):
    """(gain [M, C, C], contrast share [M]): a jittered pixel is gain @ x + share * mean grey of x.
    Brightness b and contrast c give c * b * x + (1 - c) * b * mean; saturation and hue (colour
    only) keep greys grey, so they multiply the gain and leave the offset alone."""
    draw = rng.uniform(-1, 1, (count, 4))
    jitter = rng.random(count) < spec.jitter_probability
    grey = rng.random(count) < spec.grayscale_probability
    bright = np.where(jitter, 1 + spec.brightness * draw[:, 0], 1.0)
    contrast = np.where(jitter, 1 + spec.contrast * draw[:, 1], 1.0)
    gain = (contrast * bright)[:, None, None] * np.eye(channels)
    if channels == 3:
        sat = np.where(jitter, 1 + spec.saturation * draw[:, 2], 1.0)[:, None, None]
        saturate = sat * np.eye(3) + (1 - sat) * np.outer(np.ones(3), LUMA)
        turn = hue_rotation(np.where(jitter, 2 * math.pi * spec.hue * draw[:, 3], 0.0))
        to_grey = np.where(grey[:, None, None], np.outer(np.ones(3), LUMA), np.eye(3))
        gain = to_grey @ turn @ saturate @ gain
    return gain.astype(np.float32), ((1 - contrast) * bright).astype(np.float32)


def colour(pixels, rng, spec):
    """Colour jitter and random grey of pixels [M, C, S, S] in [0, 1], clipped to [0, 1]."""
    count, channels = pixels.shape[:2]
    gain, share = colour_maps(rng, count, channels, spec)
    luma = LUMA if channels == 3 else np.ones(1, np.float32)
    flat = pixels.reshape(count, channels, -1)
    mean = flat.mean(-1) @ luma
    out = gain @ flat + (share * mean)[:, None, None]
    return np.clip(out, 0.0, 1.0, out=out).reshape(pixels.shape)


def augment(images, rng, spec=ViewSpec()):
    """One random view of images float32 [M, C, S, S] in [-1, 1] (same shape and range)."""
    pixels = images.astype(np.float32) * 0.5 + 0.5
    pixels = colour(geometry(pixels, rng, spec), rng, spec)
    return pixels * 2.0 - 1.0


def two_views(images, rng, spec=ViewSpec()):
    """Two independent random views of each image, ([M, C, S, S], [M, C, S, S])."""
    return augment(images, rng, spec), augment(images, rng, spec)


def srgb_to_lab(rgb):
    """CIE Lab (D65) of sRGB values in [0, 1], channel axis -3: L in [0, 100], a and b in about +-110."""
    rgb = np.asarray(rgb, np.float64)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.einsum("ij,...jhw->...ihw", SRGB_TO_XYZ / D65_WHITE[:, None], linear)
    f = np.where(xyz > LAB_EPSILON, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    fx, fy, fz = f[..., 0, :, :], f[..., 1, :, :], f[..., 2, :, :]
    return np.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], -3)


def lab_views(images):
    """CMC's views of colour images float32 [M, 3, S, S] in [-1, 1]: (L [M, 1, S, S], ab [M, 2, S, S]),
    each scaled to about [-1, 1]."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"the Lab views need colour images [M, 3, S, S], got shape {images.shape}")
    lab = srgb_to_lab(np.clip(images * 0.5 + 0.5, 0.0, 1.0))
    return (lab[:, :1] / 50.0 - 1.0).astype(np.float32), (lab[:, 1:] / AB_SCALE).astype(np.float32)
