"""Frames of a compressed volume decoded on several threads: order, read-ahead, outputs.

Volumes are synthetic tomosynthesis files whose frames are encoded here as JPEG 2000 / HTJ2K
codestreams; expectations come from the uncompressed file and from decoding one at a time.
"""

from __future__ import annotations

import threading
import time

import imagecodecs
import numpy as np
import pytest
from dicomprep_testdata import synthetic
from pydicom.encaps import encapsulate

from dicomprep.formats.codestreams import codestream_frames, decode_in_order
from dicomprep.formats.decode import image_info, read_header
from dicomprep.formats.tiff import read_frames, read_geometry
from dicomprep.options import Options
from dicomprep.pipeline import process_file

from .codestream_helpers import (
    HTJ2K_LOSSLESS,
    J2K_LOSSLESS,
    JPEGLS_LOSSLESS,
    encode_frame,
    write_encapsulated,
)

FRAMES, ROWS, COLUMNS = 9, 320, 256


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """An uncompressed tomosynthesis volume with its frames stored out of z order."""
    folder = tmp_path_factory.mktemp("volume")
    ds = synthetic.tomosynthesis(frames=FRAMES, rows=ROWS, columns=COLUMNS, shuffled=True)
    return ds, synthetic.write(ds, folder / "raw.dcm"), folder


@pytest.fixture(scope="module")
def codestreams(volume):
    ds, _, _ = volume
    frames = ds.pixel_array
    return frames, [encode_frame(f, J2K_LOSSLESS, 12) for f in frames]


def test_full_resolution_jpeg2000_decoding_releases_the_gil(tmp_path):
    """While a thread decodes, this thread keeps running Python: the longest pause between
    two of its loop iterations is a small part of the decode (a decoder holding the GIL for
    the whole frame would stall it for the whole decode)."""
    ds = synthetic.mammogram(rows=1664, columns=1280, seed=0)
    path = write_encapsulated(ds, tmp_path / "j2k.dcm", J2K_LOSSLESS)
    header, _ = read_header(path)
    frames = codestream_frames(path, header, image_info(header))
    data = next(frames.frame_bytes([0]))
    worker = threading.Thread(target=lambda: [frames.decode(data, 0) for _ in range(3)])
    stamps = [time.perf_counter()]
    worker.start()
    while worker.is_alive():
        stamps.append(time.perf_counter())
    duration = stamps[-1] - stamps[0]
    assert duration > 0.1  # three full decodes of 1664 x 1280
    assert np.diff(stamps).max() < 0.25 * duration


@pytest.mark.parametrize("threads", [1, 2, 4, 16])
def test_results_come_in_the_order_of_the_items(codestreams, threads):
    frames, data = codestreams
    order = [4, 0, 8, 2, 7, 1, 3, 6, 5]
    decoded = list(decode_in_order((data[i] for i in order), imagecodecs.jpeg2k_decode, threads))
    assert len(decoded) == len(order)
    for got, i in zip(decoded, order, strict=True):
        assert np.array_equal(got, frames[i])


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_at_most_threads_items_are_read_ahead(codestreams, threads):
    _, data = codestreams
    pulled = []

    def items():
        for i, d in enumerate(data):
            pulled.append(i)
            yield d

    for k, _ in enumerate(decode_in_order(items(), imagecodecs.jpeg2k_decode, threads)):
        # result k is out: items up to k plus at most `threads - 1` more have been read
        assert len(pulled) <= k + max(threads, 1)
    assert len(pulled) == len(data)


def test_a_failing_item_raises_in_order_and_stops(codestreams):
    _, data = codestreams
    broken = [data[0], data[1], b"\xff\x4f\xff\x51 not a codestream", data[3], data[4]]
    results = decode_in_order(iter(broken), imagecodecs.jpeg2k_decode, 2)
    assert next(results).shape == (ROWS, COLUMNS)
    assert next(results).shape == (ROWS, COLUMNS)
    with pytest.raises(imagecodecs.Jpeg2kError):
        next(results)


@pytest.mark.parametrize("syntax", [J2K_LOSSLESS, HTJ2K_LOSSLESS, JPEGLS_LOSSLESS])
@pytest.mark.parametrize("volume_option", ["keep", "max-intensity", "interpolate"])
def test_volume_output_does_not_depend_on_decode_threads(tmp_path, volume, syntax, volume_option):
    ds, raw, folder = volume
    encoded = folder / f"{syntax}.dcm"
    if not encoded.exists():
        write_encapsulated(ds, encoded, syntax)
    options = Options(
        crop=True,
        crop_max=True,
        size=(128, 160),
        volume=volume_option,
        target_frames=4 if volume_option == "interpolate" else None,
        decode_resolution="full",
    )
    expected_path = tmp_path / "raw.tiff"
    assert process_file(raw, options=options, output_path=expected_path).status == "ok"
    expected = read_frames(expected_path)
    for threads in (1, 2, 3):
        out = tmp_path / f"threads{threads}.tiff"
        result = process_file(encoded, options=options, output_path=out, decode_threads=threads)
        assert result.status == "ok", result.message
        assert np.array_equal(read_frames(out), expected)
        assert read_geometry(out) == read_geometry(expected_path)


def test_reduced_volume_frames_follow_z_order_with_threads(tmp_path, volume):
    """Each frame carries a marker whose value rises with z: the output keeps z order."""
    ds, _, folder = volume
    encoded = write_encapsulated(ds, folder / "reduced.dcm", J2K_LOSSLESS)
    header, _ = read_header(encoded)
    assert codestream_frames(encoded, header, image_info(header)).level_for(96, 120) == 1
    options = Options(crop=True, crop_max=True, size=(96, 120), voi=(2000.0, 4000.0))
    outputs = []
    for threads in (1, 2):
        out = tmp_path / f"reduced{threads}.tiff"
        result = process_file(encoded, options=options, output_path=out, decode_threads=threads)
        assert result.status == "ok", result.message
        outputs.append(read_frames(out))
    assert np.array_equal(outputs[0], outputs[1])
    full = tmp_path / "full.tiff"
    full_options = Options(**{**options.to_dict(), "size": (96, 120), "decode_resolution": "full"})
    assert process_file(encoded, options=full_options, output_path=full).status == "ok"
    assert not np.array_equal(read_frames(full), outputs[0])  # the reduced path ran
    marker = synthetic.frame_marker_box(ROWS, COLUMNS)
    centre = ((marker.left + marker.right) / 2, (marker.top + marker.bottom) / 2)
    x, y = np.rint(read_geometry(tmp_path / "reduced1.tiff").to_output(centre)).astype(int)
    values = outputs[0][:, y, x].astype(int)
    assert np.all(np.diff(values) > 0), values


def test_a_corrupt_frame_fails_the_file_at_decode(tmp_path, volume):
    ds, _, _ = volume
    data = [encode_frame(f, J2K_LOSSLESS, 12) for f in ds.pixel_array]
    data[5] = data[5][: len(data[5]) // 3]
    broken = ds.copy()
    broken.PixelData = encapsulate(data)
    broken["PixelData"].VR = "OB"
    broken["PixelData"].is_undefined_length = True
    broken.file_meta.TransferSyntaxUID = J2K_LOSSLESS
    path = tmp_path / "broken.dcm"
    broken.save_as(path, enforce_file_format=True)
    options = Options(crop=True, size=(128, 160), decode_resolution="full")
    result = process_file(path, options=options, output_path=tmp_path / "o.tiff", decode_threads=2)
    assert result.status == "failed"
    assert result.stage == "decode"
    assert not (tmp_path / "o.tiff").exists()
