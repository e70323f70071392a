"""Discovery: recognition by content, sources, the catalog cache, duplicates, shards."""

from __future__ import annotations

import os
import shutil

import pydicom
from dicomprep_testdata import synthetic
from pydicom.data import get_testdata_file

from dicomprep.run.discover import (
    DICOM,
    DUPLICATE,
    NO_PIXELS,
    NOT_DICOM,
    build_catalog,
    iter_source_paths,
)
from dicomprep.run.plan import WorkPaths, plan_shards


def mammo(path, seed=0):
    return synthetic.write(synthetic.mammogram(rows=64, columns=48, seed=seed), path)


def test_dicom_is_recognised_by_content_not_extension(tmp_path):
    mammo(tmp_path / "image.jpg")
    (tmp_path / "fake.dcm").write_text("not dicom at all")
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.preamble = None
    ds.save_as(tmp_path / "no_preamble", enforce_file_format=False)
    shutil.copy(get_testdata_file("rtplan.dcm"), tmp_path / "plan.dcm")
    catalog = build_catalog(tmp_path).set_index("path")
    status = {os.path.basename(p): s for p, s in catalog["status"].items()}
    assert status == {
        "image.jpg": DICOM,
        "fake.dcm": NOT_DICOM,
        "no_preamble": DICOM,
        "plan.dcm": NO_PIXELS,
    }
    ct = catalog.loc[str(tmp_path / "no_preamble")]
    assert (ct.modality, ct.rows, ct.columns) == ("CT", 128, 128)


def test_list_file_ignores_comments_and_resolves_relative_paths(tmp_path):
    mammo(tmp_path / "a" / "one.dcm")
    mammo(tmp_path / "b" / "two.dcm", seed=1)
    listing = tmp_path / "lists" / "inputs.txt"
    listing.parent.mkdir()
    listing.write_text(f"# inputs\n\n../a/one.dcm\n{tmp_path / 'b' / 'two.dcm'}\n")
    paths = [p.resolve() for p in iter_source_paths(listing)]
    assert paths == [tmp_path / "a" / "one.dcm", tmp_path / "b" / "two.dcm"]


def test_symlinks_are_followed_only_when_asked(tmp_path):
    mammo(tmp_path / "real" / "one.dcm")
    (tmp_path / "src").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "src" / "linked")
    assert list(iter_source_paths(tmp_path / "src")) == []
    # the link leads outside the source folder: followed only when that is asked too
    assert list(iter_source_paths(tmp_path / "src", follow_symlinks=True)) == []
    paths = iter_source_paths(tmp_path / "src", True, follow_links_outside_source=True)
    assert len(list(paths)) == 1


def test_unchanged_files_are_not_read_again(tmp_path):
    path = mammo(tmp_path / "one.dcm")
    first = build_catalog(tmp_path)
    st = path.stat()
    path.write_bytes(b"x" * st.st_size)  # same size ...
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and mtime: looks unchanged
    again = build_catalog(tmp_path, first)
    assert again.loc[0, "status"] == DICOM  # the header was not read again
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    changed = build_catalog(tmp_path, first)
    assert changed.loc[0, "status"] == NOT_DICOM  # a changed mtime re-reads it


def test_first_path_wins_a_duplicate_and_the_next_takes_over(tmp_path):
    a = mammo(tmp_path / "a.dcm")
    shutil.copy(a, tmp_path / "b.dcm")
    catalog = build_catalog(tmp_path)
    assert catalog["status"].tolist() == [DICOM, DUPLICATE]
    assert str(a) in catalog.loc[1, "reason"]
    a.unlink()
    catalog = build_catalog(tmp_path, catalog)
    assert catalog["status"].tolist() == [DICOM]


def test_new_files_only_touch_the_shards_they_land_in(tmp_path):
    src, work = tmp_path / "src", tmp_path / "work"
    for k in range(12):
        mammo(src / f"m{k:02d}.dcm", seed=k)
    shards, _ = plan_shards(src, work, 8)
    paths = WorkPaths(work)
    before = {s: paths.shard_list(s).stat().st_mtime_ns for s in shards}
    contents = {s: paths.shard_list(s).read_text() for s in shards}
    mammo(src / "new.dcm", seed=99)
    shards_after, _ = plan_shards(src, work, 8)
    changed = [
        s
        for s in shards_after
        if s not in before or paths.shard_list(s).read_text() != contents.get(s)
    ]
    assert len(changed) == 1
    for s in shards:
        if s not in changed:
            assert paths.shard_list(s).stat().st_mtime_ns == before[s]
    listed = [
        line.split("\t")[0]
        for s in shards_after
        for line in paths.shard_list(s).read_text().splitlines()[1:]
    ]
    assert sorted(listed) == sorted(str(p) for p in src.glob("*.dcm"))  # each file once


def test_the_catalog_counts_frames_and_keeps_where_slices_lie(tmp_path):
    """A single-frame image has one frame (not 0); multi-frame files keep their count; the
    placement facts (what stacking needs) are the header's values."""
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "ct.dcm")
    shutil.copy(get_testdata_file("emri_small.dcm"), tmp_path / "mr.dcm")
    catalog = build_catalog(tmp_path).set_index("key")
    assert catalog.loc["ct.dcm", "number_of_frames"] == 1
    assert catalog.loc["mr.dcm", "number_of_frames"] == 10
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    position = [float(v) for v in catalog.loc["ct.dcm", "image_position"].split("\\")]
    assert position == [float(v) for v in ds.ImagePositionPatient]
    assert catalog.loc["ct.dcm", "instance_number"] == int(ds.InstanceNumber)
    assert catalog.loc["ct.dcm", "sop_class_uid"] == ds.SOPClassUID


def test_relative_keys_equal_the_absolute_path_definition(tmp_path, monkeypatch):
    from dicomprep.run.discover import relative_keys

    def by_definition(path, root):
        prefix = os.path.join(os.path.abspath(root), "")
        absolute = os.path.abspath(path)
        return absolute[len(prefix) :] if absolute.startswith(prefix) else absolute

    monkeypatch.chdir(tmp_path)
    for root in [str(tmp_path / "src"), "src", "./src", "src/", "src/sub/..", "."]:
        paths = [
            os.path.join(root, "a", "b.dcm"),
            os.path.join(root, ".hidden.dcm"),
            os.path.join(root, "a", "..", "c.dcm"),
            os.path.join(root, "a", ".", "d.dcm"),
            os.path.join(root, "") + "/e.dcm",
            str(tmp_path / "elsewhere" / "f.dcm"),
            "src2/g.dcm",
        ]
        assert relative_keys(paths, root) == [by_definition(p, root) for p in paths], root
