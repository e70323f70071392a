"""Annotation mapping: a landmark box lands on its bright pixels in the output, round trips
are exact, crop and padding cuts are flagged, unknown images are reported."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from dicomprep_testdata import synthetic

from dicomprep.formats.manifest import scan_dataset, write_manifest
from dicomprep.options import Options
from dicomprep.pipeline import process_file
from dicomprep.training.annotations import main, map_annotations, map_coco

ROWS, COLUMNS = 416, 320
CANVAS = (128, 128)
LANDMARK = (120, 190, 160, 222)  # x0, y0, x1, y1 in source pixels, inside the anatomy
LANDMARK_VALUE = 3400  # inside the window (300..3500): brighter than any anatomy (<= 3000)
OPTIONS = Options(crop=True, crop_max=True, size=CANVAS, padding="center")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    ds = synthetic.mammogram(rows=ROWS, columns=COLUMNS, laterality="L", seed=11)
    pixels = ds.pixel_array.copy()
    x0, y0, x1, y1 = LANDMARK
    assert pixels[y0:y1, x0:x1].min() > 0  # inside the breast
    pixels[y0:y1, x0:x1] = LANDMARK_VALUE
    ds.PixelData = pixels.tobytes()
    source = synthetic.write(ds, tmp_path_factory.mktemp("src") / "mg.dcm")
    result = process_file(source, root, OPTIONS)
    assert result.status == "ok", result.message
    write_manifest(scan_dataset(root), root / "manifest.csv")
    return root, str(ds.SOPInstanceUID), root / result.output


def expected_geometry():
    """Crop box from the synthetic layout; resize and centre padding from the rule."""
    a = synthetic.mammogram_layout(ROWS, COLUMNS, "L").anatomy
    s = min(CANVAS[0] / a.width, CANVAS[1] / a.height)
    width, height = round(a.width * s), round(a.height * s)
    left, top = (CANVAS[0] - width) // 2, (CANVAS[1] - height) // 2
    return a, (left, top, left + width, top + height)


def test_landmark_box_lands_on_the_bright_pixels(dataset, tmp_path):
    root, sop, tiff = dataset
    table = pd.DataFrame([{"sop_instance_uid": sop, "label": "landmark"}])
    table[["x0", "y0", "x1", "y1"]] = [LANDMARK]
    mapped = map_annotations(table, root).iloc[0]
    assert mapped["status"] == "ok" and not mapped["clipped"] and not mapped["outside"]
    assert mapped["label"] == "landmark"
    box = np.array([mapped["x0"], mapped["y0"], mapped["x1"], mapped["y1"]])

    output = tifffile.imread(tiff).astype(np.float64) / 65535
    threshold = 0.9  # the landmark is ~0.97 after the window, the anatomy at most ~0.84
    lo = np.floor(box[:2]).astype(int) - 4
    hi = np.ceil(box[2:]).astype(int) + 4
    region = output[lo[1] : hi[1], lo[0] : hi[0]]
    rows, cols = np.nonzero(region > threshold)
    bright = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]) + np.r_[lo, lo]
    np.testing.assert_allclose(bright, box, atol=1.0)
    inner = output[int(np.ceil(box[1])) : int(box[3]), int(np.ceil(box[0])) : int(box[2])]
    assert inner.size > 0 and inner.min() > threshold


def test_round_trip_through_csv_files_is_exact(dataset, tmp_path):
    root, sop, _ = dataset
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 300, size=(50, 2))
    sizes = rng.uniform(0, 80, size=(50, 2))
    table = pd.DataFrame(
        {
            "sop_instance_uid": sop,
            "x0": corners[:, 0],
            "y0": corners[:, 1],
            "x1": corners[:, 0] + sizes[:, 0],
            "y1": corners[:, 1] + sizes[:, 1],
            "x": rng.uniform(0, COLUMNS, 50),
            "y": rng.uniform(0, ROWS, 50),
            "frame": 0,
        }
    )
    source_csv, output_csv, back_csv = (tmp_path / n for n in ("a.csv", "b.csv", "c.csv"))
    table.to_csv(source_csv, index=False)
    assert main([str(source_csv), "--dataset", str(root), "-o", str(output_csv)]) == 0
    forward = pd.read_csv(output_csv)
    assert not np.allclose(forward[["x0", "y0"]], table[["x0", "y0"]])  # something moved
    assert main([str(output_csv), "--dataset", str(root), "-o", str(back_csv), "--inverse"]) == 0
    back = pd.read_csv(back_csv)
    columns = ["x0", "y0", "x1", "y1", "x", "y"]
    np.testing.assert_allclose(back[columns], table[columns], rtol=0, atol=1e-6)
    assert (back["frame"] == 0).all() and (back["status"] == "ok").all()


def test_forward_mapping_follows_the_formula(dataset):
    root, sop, _ = dataset
    a, (left, top, right, bottom) = expected_geometry()
    table = pd.DataFrame({"sop_instance_uid": [sop], "x": [a.left + 10.0], "y": [a.top + 20.0]})
    mapped = map_annotations(table, root).iloc[0]
    sx, sy = (right - left) / a.width, (bottom - top) / a.height
    assert mapped["x"] == pytest.approx(10.0 * sx + left, abs=1e-9)
    assert mapped["y"] == pytest.approx(20.0 * sy + top, abs=1e-9)


def test_boxes_cut_by_crop_or_padding_are_flagged(dataset):
    root, sop, _ = dataset
    a, active = expected_geometry()
    mid = (a.top + a.bottom) / 2
    boxes = [
        (a.left + 5, mid, a.left + 15, mid + 10),  # inside the crop box
        (a.right - 5, mid, a.right + 5, mid + 10),  # straddles the crop edge
        (a.right + 2, mid, a.right + 8, mid + 10),  # entirely cropped away
    ]
    table = pd.DataFrame(boxes, columns=["x0", "y0", "x1", "y1"]).assign(sop_instance_uid=sop)
    mapped = map_annotations(table, root)
    assert mapped["clipped"].tolist() == [False, True, True]
    assert mapped["outside"].tolist() == [False, False, True]
    clamped = map_annotations(table, root, clip=True)
    assert clamped.loc[1, "x1"] == pytest.approx(active[2])  # ends at the padding

    left, top, right, bottom = active
    assert left > 0 or top > 0  # the padding test needs padding
    if left > 0:
        output_boxes = [(left - 3, top + 5, left + 3, top + 9), (0, top + 5, left - 1, top + 9)]
    else:
        output_boxes = [(left + 5, top - 3, left + 9, top + 3), (left + 5, 0, left + 9, top - 1)]
    table = pd.DataFrame(output_boxes, columns=["x0", "y0", "x1", "y1"]).assign(
        sop_instance_uid=sop
    )
    back = map_annotations(table, root, inverse=True)
    assert back["clipped"].tolist() == [True, True]
    assert back["outside"].tolist() == [False, True]


def test_unknown_images_and_bad_rows_are_reported_not_fatal(dataset, tmp_path, capsys):
    root, sop, _ = dataset
    table = pd.DataFrame(
        {
            "sop_instance_uid": [sop, "1.2.3.4", sop, sop],
            "x0": [10, 10, None, 30],
            "y0": [10, 10, None, 30],
            "x1": [20, 20, None, 20],
            "y1": [20, 20, None, 40],
        }
    )
    source, output = tmp_path / "in.csv", tmp_path / "out.csv"
    table.to_csv(source, index=False)
    assert main([str(source), "--dataset", str(root), "-o", str(output)]) == 1
    mapped = pd.read_csv(output)
    assert mapped["status"].tolist() == ["ok", "not-in-manifest", "no-coordinates", "invalid-box"]
    assert mapped.loc[1, "x0"] == 10  # left as it was
    err = capsys.readouterr().err
    assert "row 3 (1.2.3.4): not-in-manifest" in err
    assert "1 of 4 rows mapped" in err
    assert main([str(source), "--dataset", str(tmp_path / "missing"), "-o", str(output)]) == 2


def test_coco_round_trip_and_agreement_with_the_table(dataset, tmp_path):
    root, sop, tiff = dataset
    x0, y0, x1, y1 = LANDMARK
    coco = {
        "images": [
            {"id": 1, "file_name": f"cases/{sop}.dcm", "width": COLUMNS, "height": ROWS},
            {"id": 2, "file_name": "9.9.9.dcm", "width": 10, "height": 10},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0),
                "segmentation": [[x0, y0, x1, y0, x1, y1]],
                "keypoints": [x0, y0, 2],
                "category_id": 1,
            },
            {"id": 2, "image_id": 2, "bbox": [1, 1, 2, 2], "category_id": 1},
        ],
        "categories": [{"id": 1, "name": "landmark"}],
    }
    source, forward_path, back_path = (tmp_path / n for n in ("a.json", "b.json", "c.json"))
    source.write_text(json.dumps(coco))
    assert main([str(source), "--dataset", str(root), "-o", str(forward_path)]) == 1
    forward = json.loads(forward_path.read_text())
    image = forward["images"][0]
    assert image["sop_instance_uid"] == sop and image["status"] == "ok"
    assert (root / image["file_name"]).resolve() == tiff.resolve()
    assert (image["width"], image["height"]) == CANVAS
    assert forward["images"][1]["status"] == "not-in-manifest"
    assert forward["annotations"][1]["bbox"] == [1, 1, 2, 2]

    table = pd.DataFrame([{"sop_instance_uid": sop, "x0": x0, "y0": y0, "x1": x1, "y1": y1}])
    row = map_annotations(table, root).iloc[0]
    bx, by, bw, bh = forward["annotations"][0]["bbox"]
    np.testing.assert_allclose(
        [bx, by, bx + bw, by + bh], row[["x0", "y0", "x1", "y1"]].astype(float)
    )
    assert forward["annotations"][0]["keypoints"][:2] == pytest.approx([row["x0"], row["y0"]])
    assert forward["annotations"][0]["area"] == pytest.approx(bw * bh)

    back = map_coco(forward, root, inverse=True)
    assert back["images"][0]["file_name"] == coco["images"][0]["file_name"]
    assert (back["images"][0]["width"], back["images"][0]["height"]) == (COLUMNS, ROWS)
    np.testing.assert_allclose(
        back["annotations"][0]["bbox"], coco["annotations"][0]["bbox"], atol=1e-6
    )
    np.testing.assert_allclose(
        back["annotations"][0]["segmentation"][0],
        coco["annotations"][0]["segmentation"][0],
        atol=1e-6,
    )
    assert back["annotations"][0]["area"] == pytest.approx(coco["annotations"][0]["area"])
