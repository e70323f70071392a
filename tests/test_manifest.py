"""The manifest table, its CSV/Parquet files and the dataset scan (docs/output-format.md)."""

from __future__ import annotations

import csv
import os

import numpy as np
import pandas as pd
import pytest

from dicomprep.formats.geometry import Geometry
from dicomprep.formats.manifest import (
    MANIFEST_COLUMNS,
    is_valid_uid,
    manifest_frame,
    read_manifest,
    scan_dataset,
    write_manifest,
)
from dicomprep.formats.tiff import write_tiff

EXPECTED_COLUMNS = [
    "study_instance_uid",
    "sop_instance_uid",
    "path",
    "inode",
    "width",
    "height",
    "channels",
    "num_frames",
    # trailing columns: the first eight keep their order and meaning
    "series_instance_uid",
    "slices",
    "source",
    "warnings",
]


def row(study, sop, *, path=None, inode=1, width=4, height=3, channels=1, num_frames=1):
    return {
        "study_instance_uid": study,
        "sop_instance_uid": sop,
        "path": path if path is not None else f"{study}/{sop}.tiff",
        "inode": inode,
        "width": width,
        "height": height,
        "channels": channels,
        "num_frames": num_frames,
    }


def make_tiff(path, width=24, height=16, channels=1, num_frames=1, dtype=np.uint16):
    shape = (height, width) + ((3,) if channels == 3 else ())
    frames = (np.full(shape, i, dtype) for i in range(num_frames))
    write_tiff(path, frames, num_frames=num_frames, geometry=Geometry.identity(width, height))


# -- UIDs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", "1.2.840.10008.5.1.4.1.1.2", "0.0", "9" * 64])
def test_valid_uids(value):
    assert is_valid_uid(value)


@pytest.mark.parametrize(
    "value",
    ["", ".", "1.", ".1", "1..2", "1.2a", "1,2", "1 2", "9" * 65, "../1", "1/2", "١.٢", None, 12],
)
def test_invalid_uids(value):
    assert not is_valid_uid(value)


# -- table --------------------------------------------------------------------------------


def test_manifest_frame_columns_dtypes_and_order():
    rows = [
        row("1.2.10", "1.2.10.1"),
        row("1.2.9", "1.2.9.5"),
        row("1.2.9", "1.2.9.10"),
        row("1.2.10", "1.2.10.0"),
    ]
    df = manifest_frame(rows)
    assert list(df.columns) == EXPECTED_COLUMNS == MANIFEST_COLUMNS
    for column in ("inode", "width", "height", "channels", "num_frames", "slices"):
        assert df[column].dtype == np.dtype("int64")
    for column in ("study_instance_uid", "sop_instance_uid", "path", "series_instance_uid"):
        assert isinstance(df[column].dtype, pd.StringDtype)
    # a record without the trailing columns gets their defaults: one slice, source unknown
    assert set(df["slices"]) == {1} and set(df["source"]) == set(df["warnings"]) == {""}
    # plain string order, not numeric
    assert list(zip(df.study_instance_uid, df.sop_instance_uid, strict=True)) == [
        ("1.2.10", "1.2.10.0"),
        ("1.2.10", "1.2.10.1"),
        ("1.2.9", "1.2.9.10"),
        ("1.2.9", "1.2.9.5"),
    ]
    assert list(df.index) == [0, 1, 2, 3]


def test_manifest_frame_ignores_extra_keys_and_rejects_missing():
    df = manifest_frame([{**row("1", "1.1"), "status": "ok"}])
    assert list(df.columns) == MANIFEST_COLUMNS
    incomplete = row("1", "1.1")
    del incomplete["inode"]
    with pytest.raises(ValueError, match="inode"):
        manifest_frame([incomplete])


def test_empty_manifest():
    df = manifest_frame([])
    assert list(df.columns) == MANIFEST_COLUMNS
    assert len(df) == 0
    assert df["inode"].dtype == np.dtype("int64")


# -- files --------------------------------------------------------------------------------


def test_csv_quoting_and_line_endings(tmp_path):
    df = manifest_frame([row("1.2", "1.2.3", path='odd,name "x"/1.2.3.tiff'), row("1.1", "1.1.1")])
    path = tmp_path / "manifest.csv"
    write_manifest(df, path)
    data = path.read_bytes()
    assert b"\r" not in data
    lines = data.decode("utf-8").split("\n")
    assert lines[0] == ",".join(MANIFEST_COLUMNS)
    assert lines[1] == "1.1,1.1.1,1.1/1.1.1.tiff,1,4,3,1,1,,1,,"
    assert lines[2] == '1.2,1.2.3,"odd,name ""x""/1.2.3.tiff",1,4,3,1,1,,1,,'
    assert lines[3] == ""  # ends with a newline
    with open(path, newline="") as fh:
        records = list(csv.DictReader(fh))
    assert records[1]["path"] == 'odd,name "x"/1.2.3.tiff'
    back = read_manifest(path)
    pd.testing.assert_frame_equal(back, df)


def test_csv_bytes_equal_pandas_with_and_without_quoted_fields(tmp_path):
    rows = [
        row("1.2", "1.2.3", path="1.2/1.2.3.tiff", inode=2**40, width=3328),
        row("1.1", "1.1.1", path="é ü/with space.tiff", inode=None),
        row("1.3", "1.3.1", path="1.3/1.3.1.tiff", inode=7, num_frames=60),
    ]
    for extra in ([], [row("1.4", "1.4.1", path='a,b "c"/1.4.1.tiff')]):
        df = manifest_frame(rows + extra)
        path = tmp_path / "manifest.csv"
        write_manifest(df, path)
        expected = df.to_csv(index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        assert path.read_bytes() == expected.encode("utf-8")


def test_parquet_round_trip(tmp_path):
    df = manifest_frame(
        [row("1.2", "1.2.3", inode=2**40, width=3328, height=4096, num_frames=60), row("1", "1.1")]
    )
    path = tmp_path / "manifest.parquet"
    write_manifest(df, path)
    back = pd.read_parquet(path)
    assert list(back.columns) == MANIFEST_COLUMNS
    pd.testing.assert_frame_equal(back, df)
    pd.testing.assert_frame_equal(read_manifest(path), df)
    assert back["inode"].tolist() == [1, 2**40]


@pytest.mark.parametrize("name", ["manifest.csv", "manifest.parquet"])
def test_write_manifest_is_deterministic_and_atomic(tmp_path, name):
    rows = [row("1.2", f"1.2.{i}", inode=1000 - i) for i in range(20)]
    path = tmp_path / "out" / name
    write_manifest(manifest_frame(rows), path)
    first = path.read_bytes()
    # same table, built from rows in another order
    write_manifest(manifest_frame(reversed(rows)), path)
    assert path.read_bytes() == first
    assert os.listdir(path.parent) == [name]


def test_write_manifest_normalises_column_order(tmp_path):
    df = manifest_frame([row("1", "1.1"), row("1", "1.2")])
    shuffled = df[list(reversed(MANIFEST_COLUMNS))].iloc[::-1]
    write_manifest(df, tmp_path / "a.csv")
    write_manifest(shuffled, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_write_manifest_rejects_other_suffixes(tmp_path):
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        write_manifest(manifest_frame([]), tmp_path / "manifest.tsv")
    assert os.listdir(tmp_path) == []


# -- scan ---------------------------------------------------------------------------------


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "dataset"
    make_tiff(root / "1.2.9" / "1.2.9.2.tiff", width=30, height=20)
    make_tiff(root / "1.2.9" / "1.2.9.10.tiff", width=8, height=6, channels=3, dtype=np.uint8)
    make_tiff(root / "1.2.10" / "1.2.10.1.tiff", width=12, height=10, num_frames=4)
    # things that are not outputs
    make_tiff(root / "not-a-uid" / "1.2.3.tiff")  # study folder is not a UID
    make_tiff(root / "1.2.9" / "scan.tiff")  # file name is not a UID
    make_tiff(root / "1.2.9" / "1.2.9.3.tif")  # other suffix
    make_tiff(root / "1.2.9" / "1.2.9.4.TIFF")
    make_tiff(root / "1.2.5.tiff")  # at the root, not in a study folder
    (root / "1.2.9" / ".1.2.9.7.tiff.123.tmp").write_bytes(b"II*\x00partial")
    (root / "1.2.9" / "1.2.9.8.txt").write_text("notes")
    (root / "1.2.9" / "1.2.9.9.tiff").mkdir()  # a folder with a TIFF-like name
    (root / "manifest.csv").write_text("old")
    (root / "1.2.11").mkdir()  # empty study folder
    return root


def test_scan_dataset(dataset):
    df = scan_dataset(dataset)
    assert list(df.columns) == MANIFEST_COLUMNS
    assert df["path"].tolist() == [
        "1.2.10/1.2.10.1.tiff",
        "1.2.9/1.2.9.10.tiff",
        "1.2.9/1.2.9.2.tiff",
    ]
    assert df["study_instance_uid"].tolist() == ["1.2.10", "1.2.9", "1.2.9"]
    assert df["sop_instance_uid"].tolist() == ["1.2.10.1", "1.2.9.10", "1.2.9.2"]
    assert df["width"].tolist() == [12, 8, 30]
    assert df["height"].tolist() == [10, 6, 20]
    assert df["channels"].tolist() == [1, 3, 1]
    assert df["num_frames"].tolist() == [4, 1, 1]
    for path, inode in zip(df["path"], df["inode"], strict=True):
        assert inode == os.stat(dataset / path).st_ino
    pd.testing.assert_frame_equal(df, manifest_frame(df.to_dict("records")))


def test_scan_dataset_then_write_both_formats(dataset, tmp_path):
    df = scan_dataset(dataset)
    write_manifest(df, tmp_path / "m.csv")
    write_manifest(df, tmp_path / "m.parquet")
    pd.testing.assert_frame_equal(read_manifest(tmp_path / "m.csv"), df)
    pd.testing.assert_frame_equal(read_manifest(tmp_path / "m.parquet"), df)


def test_scan_empty_and_missing_root(tmp_path):
    df = scan_dataset(tmp_path)
    assert len(df) == 0 and list(df.columns) == MANIFEST_COLUMNS
    with pytest.raises(NotADirectoryError):
        scan_dataset(tmp_path / "missing")


def test_scan_reports_broken_tiff(tmp_path):
    (tmp_path / "1.2").mkdir()
    (tmp_path / "1.2" / "1.2.3.tiff").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"1\.2\.3\.tiff"):
        scan_dataset(tmp_path)
