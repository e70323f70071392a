"""Tests of dicomprep.pixels.resize against a naive reference written straight from the formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomprep.pixels.resize import FILTERS, fit_size, resize

# -- naive reference -----------------------------------------------------------------------

SUPPORT = {"nearest": 0.0, "triangle": 1.0, "catmull-rom": 2.0, "gaussian": 3.0, "lanczos3": 3.0}


def ref_kernel(name: str, x: float) -> float:
    """The filter kernels, one value at a time."""
    a = abs(x)
    if name == "nearest":
        return 1.0
    if name == "triangle":
        return max(0.0, 1.0 - a)
    if name == "catmull-rom":  # Keys a = -0.5
        if a < 1.0:
            return 1.5 * a**3 - 2.5 * a**2 + 1.0
        if a < 2.0:
            return -0.5 * a**3 + 2.5 * a**2 - 4.0 * a + 2.0
        return 0.0
    if name == "gaussian":
        sigma = 0.5
        return math.exp(-(x**2) / (2 * sigma**2)) / math.sqrt(2 * math.pi * sigma**2)
    if name == "lanczos3":
        if a >= 3.0:
            return 0.0

        def sinc(t: float) -> float:
            return 1.0 if t == 0 else math.sin(math.pi * t) / (math.pi * t)

        return sinc(x) * sinc(x / 3.0)
    raise AssertionError(name)


def ref_axis(n_in: int, n_out: int, name: str) -> list[tuple[int, list[float]]]:
    """(left, normalised weights) per output index.

    Only ``ratio`` and ``center`` are single precision, as in image-rs (they decide which input
    pixels are used); everything else is double precision.
    """
    ratio = np.float32(n_in) / np.float32(n_out)
    sratio = max(ratio, np.float32(1.0))
    src_support = np.float32(SUPPORT[name]) * sratio
    rows = []
    for o in range(n_out):
        center = (np.float32(o) + np.float32(0.5)) * ratio
        left = min(max(math.floor(center - src_support), 0), n_in - 1)
        right = min(max(math.ceil(center + src_support), left + 1), n_in)
        c = float(center) - 0.5
        weights = [ref_kernel(name, (i - c) / float(sratio)) for i in range(left, right)]
        total = sum(weights)
        rows.append((left, [w / total for w in weights]))
    return rows


def ref_resize(image: np.ndarray, width: int, height: int, name: str) -> np.ndarray:
    """Vertical pass, then horizontal pass, in float64 loops; round and clip integers at the end.

    The same size is a plain copy, without filtering (as in image-rs; this matters for the
    gaussian, the one kernel that is not zero at the neighbouring pixels).
    """
    data = image.astype(np.float64)
    in_h, in_w = data.shape[:2]
    if (in_w, in_h) == (width, height):
        return data
    tmp = np.zeros((height, in_w) + data.shape[2:])
    for o, (left, weights) in enumerate(ref_axis(in_h, height, name)):
        for k, w in enumerate(weights):
            tmp[o] += w * data[left + k]
    out = np.zeros((height, width) + data.shape[2:])
    for o, (left, weights) in enumerate(ref_axis(in_w, width, name)):
        for k, w in enumerate(weights):
            out[:, o] += w * tmp[:, left + k]
    if image.dtype.kind in "iu":
        info = np.iinfo(image.dtype)
        out = np.clip(out, info.min, info.max)
        out = np.sign(out) * np.floor(np.abs(out) + 0.5)  # half away from zero
    return out


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


rng = np.random.default_rng(20240601)

# (in_width, in_height) -> (width, height)
CASES = [
    pytest.param((37, 23), (11, 7), id="down-37x23-11x7"),
    pytest.param((50, 41), (17, 29), id="mixed-50x41-17x29"),
    pytest.param((5, 4), (13, 9), id="up-5x4-13x9"),
    pytest.param((64, 40), (32, 20), id="half-64x40-32x20"),
    pytest.param((1, 9), (4, 2), id="column-1x9-4x2"),
]


# -- agreement with the reference ----------------------------------------------------------


@pytest.mark.parametrize("filter", FILTERS)
@pytest.mark.parametrize(("src", "dst"), CASES)
def test_uint16_matches_reference(filter, src, dst):
    image = rng.integers(0, 65536, size=(src[1], src[0]), dtype=np.uint16)
    out = resize(image, dst[0], dst[1], filter)
    assert out.dtype == np.uint16
    assert out.shape == (dst[1], dst[0])
    assert max_abs_diff(out, ref_resize(image, dst[0], dst[1], filter)) <= 1


@pytest.mark.parametrize("filter", FILTERS)
@pytest.mark.parametrize(("src", "dst"), CASES)
def test_float32_matches_reference(filter, src, dst):
    image = rng.uniform(-100.0, 1000.0, size=(src[1], src[0])).astype(np.float32)
    out = resize(image, dst[0], dst[1], filter)
    assert out.dtype == np.float32
    expected = ref_resize(image, dst[0], dst[1], filter)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("filter", FILTERS)
def test_float64_and_int32_keep_their_precision(filter):
    image = rng.uniform(0, 1, size=(23, 37)) * 1e9
    out = resize(image, 11, 7, filter)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, ref_resize(image, 11, 7, filter), rtol=1e-12, atol=1e-3)
    ints = (image - 5e8).astype(np.int32)
    out = resize(ints, 11, 7, filter)
    assert out.dtype == np.int32
    assert max_abs_diff(out, ref_resize(ints, 11, 7, filter)) <= 1


@settings(max_examples=60, deadline=None)
@given(
    in_w=st.integers(1, 24),
    in_h=st.integers(1, 24),
    width=st.integers(1, 24),
    height=st.integers(1, 24),
    filter=st.sampled_from(FILTERS),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_size_matches_reference(in_w, in_h, width, height, filter, seed):
    image = np.random.default_rng(seed).integers(0, 256, size=(in_h, in_w), dtype=np.uint8)
    out = resize(image, width, height, filter)
    assert out.shape == (height, width)
    assert max_abs_diff(out, ref_resize(image, width, height, filter)) <= 1


@pytest.mark.parametrize("filter", FILTERS)
def test_rgb_is_per_channel(filter):
    image = rng.integers(0, 256, size=(41, 50, 3), dtype=np.uint8)
    out = resize(image, 17, 29, filter)
    assert out.shape == (29, 17, 3)
    assert out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], resize(image[..., c], 17, 29, filter))
    assert max_abs_diff(out, ref_resize(image, 17, 29, filter)) <= 1


@pytest.mark.parametrize("filter", ["triangle", "catmull-rom", "lanczos3"])
def test_agrees_with_pillow_float_mode(filter):
    """Pillow's BILINEAR/BICUBIC/LANCZOS use the same pixel centres and kernels."""
    image_module = pytest.importorskip("PIL.Image")
    pil_filter = {
        "triangle": image_module.Resampling.BILINEAR,
        "catmull-rom": image_module.Resampling.BICUBIC,
        "lanczos3": image_module.Resampling.LANCZOS,
    }[filter]
    image = rng.uniform(0, 1000, size=(83, 120)).astype(np.float32)
    for size in [(37, 29), (200, 150), (60, 100)]:
        expected = np.asarray(image_module.fromarray(image).resize(size, pil_filter))
        # Pillow's own rounding is the larger one here (up to ~1e-5 of the range).
        np.testing.assert_allclose(resize(image, *size, filter), expected, rtol=1e-4, atol=0.02)


# -- invariants ----------------------------------------------------------------------------


@pytest.mark.parametrize("filter", FILTERS)
@pytest.mark.parametrize(
    ("dtype", "value"),
    [
        (np.uint8, 255),
        (np.uint8, 7),
        (np.uint16, 65535),
        (np.uint16, 1234),
        (np.int16, -32768),
        (np.int16, -5),
        (np.int32, 2**31 - 1),
    ],
)
def test_constant_image_stays_constant(filter, dtype, value):
    image = np.full((41, 50), value, dtype=dtype)
    for width, height in [(17, 29), (13, 9), (120, 77), (1, 1), (50, 3)]:
        out = resize(image, width, height, filter)
        assert out.dtype == dtype
        assert np.all(out == value), (width, height)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("channels", [None, 3])
@pytest.mark.parametrize("filter", FILTERS)
def test_dtype_and_shape_preserved(dtype, channels, filter):
    shape = (23, 37) if channels is None else (23, 37, channels)
    image = (rng.uniform(0, 100, size=shape)).astype(dtype)
    for width, height in [(11, 7), (40, 30)]:
        out = resize(image, width, height, filter)
        assert out.dtype == dtype
        assert out.shape == (height, width) + shape[2:]
        assert out.flags.c_contiguous


@pytest.mark.parametrize("filter", FILTERS)
def test_int16_negative_values(filter):
    image = rng.integers(-2000, 0, size=(23, 37), dtype=np.int16)
    out = resize(image, 11, 7, filter)
    assert out.dtype == np.int16
    assert max_abs_diff(out, ref_resize(image, 11, 7, filter)) <= 1
    assert out.max() < 0


@pytest.mark.parametrize(
    ("dtype", "low", "high"),
    [(np.uint8, 0, 255), (np.uint16, 0, 65535), (np.int16, -32768, 32767)],
)
def test_overshoot_is_clipped_not_wrapped(dtype, low, high):
    """Lanczos and Catmull-Rom ring at a full-range step; the ringing must clip, not wrap."""
    image = np.full((8, 8), low, dtype=dtype)
    image[:, 4:] = high
    for filter in ("catmull-rom", "lanczos3"):
        out = resize(image, 29, 8, filter)
        assert out.min() == low
        assert out.max() == high
        # Monotone away from the step: no wrapped values next to the extremes.
        assert np.all(out[:, :5] <= out[:, 5:6])
        assert np.all(out[:, -5:] >= out[:, -6:-5])
        assert max_abs_diff(out, ref_resize(image, 29, 8, filter)) <= 1


# -- nearest -------------------------------------------------------------------------------


def nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """floor((o + 0.5) * n_in / n_out), with single precision products as in image-rs."""
    ratio = np.float32(n_in) / np.float32(n_out)
    center = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * ratio
    return np.minimum(np.floor(center).astype(np.int64), n_in - 1)


@pytest.mark.parametrize(("src", "dst"), CASES)
def test_nearest_is_an_index_gather(src, dst):
    image = rng.integers(-(2**31), 2**31 - 1, size=(src[1], src[0]), dtype=np.int32)
    out = resize(image, dst[0], dst[1], "nearest")
    expected = image[nearest_index(src[1], dst[1])][:, nearest_index(src[0], dst[0])]
    np.testing.assert_array_equal(out, expected)
    assert np.isin(out, image).all()


def test_nearest_is_exact_for_floats():
    image = rng.standard_normal((23, 37)) * 1e300
    out = resize(image, 11, 70, "nearest")
    assert np.isin(out, image).all()
    np.testing.assert_array_equal(out, image[nearest_index(23, 70)][:, nearest_index(37, 11)])


def test_nearest_follows_single_precision_centres():
    """2 -> 41 pixels: output 20 has centre exactly 1.0, which float32 puts just below 1."""
    out = resize(np.array([[10, 20]], dtype=np.uint8), 41, 1, "nearest")
    assert (out[0] == 10).sum() == 21


# -- sizes, identity, errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "box", "expected"),
    [
        ((2560, 3328), (1024, 1280), (985, 1280)),
        ((3328, 2560), (1024, 1280), (1024, 788)),
        ((1024, 1280), (1024, 1280), (1024, 1280)),
        ((100, 50), (1000, 1000), (1000, 500)),
        ((1, 1000), (100, 100), (1, 100)),
        ((1000, 1), (100, 100), (100, 1)),
        ((1, 1000), (1024, 1280), (1, 1280)),
        ((3, 3), (1, 1), (1, 1)),
    ],
)
def test_fit_size(size, box, expected):
    assert fit_size(*size, *box) == expected


def test_fit_size_never_zero():
    for n in range(1, 2000, 37):
        w, h = fit_size(1, n * 10, 50, 50)
        assert w >= 1 and h == 50


def test_fit_size_rejects_empty():
    with pytest.raises(ValueError):
        fit_size(0, 10, 100, 100)
    with pytest.raises(ValueError):
        fit_size(10, 10, 100, 0)


@pytest.mark.parametrize("filter", FILTERS)
def test_same_size_is_a_copy(filter):
    image = rng.integers(0, 65536, size=(23, 37), dtype=np.uint16)
    out = resize(image, 37, 23, filter)
    np.testing.assert_array_equal(out, image)
    assert not np.shares_memory(out, image)


def test_views_and_byte_orders():
    image = rng.integers(0, 65536, size=(60, 80), dtype=np.uint16)
    expected = resize(image[5:50, 7:70].copy(), 20, 15)
    np.testing.assert_array_equal(resize(image[5:50, 7:70], 20, 15), expected)
    np.testing.assert_array_equal(resize(np.asfortranarray(image[5:50, 7:70]), 20, 15), expected)
    swapped = image[5:50, 7:70].astype(">u2")
    out = resize(swapped, 20, 15)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, expected)


def test_unknown_filter_names_the_valid_ones():
    image = np.zeros((4, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="bicubic") as info:
        resize(image, 2, 2, "bicubic")
    for name in FILTERS:
        assert name in str(info.value)


def test_invalid_inputs():
    with pytest.raises(ValueError):
        resize(np.zeros((4, 4), np.uint8), 0, 2)
    with pytest.raises(ValueError):
        resize(np.zeros((0, 4), np.uint8), 2, 2)
    with pytest.raises(ValueError):
        resize(np.zeros(4, np.uint8), 2, 2)
    with pytest.raises(TypeError):
        resize(np.zeros((4, 4), np.float16), 2, 2)
