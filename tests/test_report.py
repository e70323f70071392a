"""The QC report (`{output}/report/index.html`): its content, privacy and how it renders.

One real workflow run on a few pydicom test files (module fixture) feeds the report tests.
Expected values are derived without the report's code: sample order from hashlib, modalities
and sizes from pydicom, crop boxes and pixels from the TIFF tags read with tifffile, thumbnail
pixels decoded with Pillow, plot numbers from the manifest with pandas and numpy.  The browser
test opens the page in headless Chromium through the DevTools protocol (over
`--remote-debugging-pipe`, standard library only) and checks that every image loaded, that
nothing was logged as an error and that no request left the local files.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import html
import io
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from dicomprep.options import Options
from dicomprep.report import build_report, data, images, plots

from .workflow_helpers import snakemake_command

CHROMIUM = Path("/usr/bin/chromium")

# CT (one plain, one 2-frame enhanced), MR (large J2K and a 10-frame volume), CR
# MONOCHROME1, US palette colour and YBR.
REAL_FILES = [
    "CT_small.dcm",
    "eCT_Supplemental.dcm",
    "MR2_J2KR.dcm",
    "emri_small.dcm",
    "RG3_UNCR.dcm",
    "OBXXXX1A.dcm",
    "US1_J2KR.dcm",
]
# Patient values written into one extra file; they must never reach the report.
SYNTHETIC_PATIENT = {
    "PatientName": "Qcsynthetic^Janet^Marie",
    "PatientID": "QCPID-90210-X",
    "PatientBirthDate": "19010203",
    "OtherPatientIDs": "QC-OTHER-77341",
}
SAMPLES_PER_MODALITY = 2

# The overlay colours as documented (README, "The QC report").
CROP_RGB = (255, 150, 0)
OUTSIDE_CROP_RGB = (200, 30, 120)
ACTIVE_RGB = (0, 210, 90)
PADDING_RGB = (40, 100, 255)
# TIFF tags of an output: DefaultCropOrigin, DefaultCropSize, ActiveArea (left, top, right,
# bottom in this project's files).
CROP_ORIGIN_TAG, CROP_SIZE_TAG, ACTIVE_AREA_TAG = 50719, 50720, 50829


def _write_patient_copy(source: Path, target: Path) -> pydicom.Dataset:
    ds = pydicom.dcmread(source)
    for keyword, value in SYNTHETIC_PATIENT.items():
        setattr(ds, keyword, value)
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["dicomprep qc test", "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["dicomprep qc test", "series"])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["dicomprep qc test", "sop"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target)
    return ds


def build_source(folder: Path) -> list[Path]:
    """Real files, a copy with synthetic patient data, a duplicate and bad inputs."""
    files = []
    for name in REAL_FILES:
        target = folder / "real" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(get_testdata_file(name), target)
        files.append(target)
    _write_patient_copy(Path(get_testdata_file("CT_small.dcm")), folder / "real" / "CT_copy.dcm")
    bad = folder / "bad"
    bad.mkdir()
    (bad / "notes.dcm").write_text("this is not a DICOM file\n")
    shutil.copy(get_testdata_file("rtplan.dcm"), bad / "rtplan.dcm")
    (folder / "zz").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "zz" / "CT_again.dcm")  # duplicate
    return sorted(p for p in folder.rglob("*") if p.is_file())


def patient_values(paths: list[Path]) -> set[str]:
    """Names, IDs and birth dates of every input (as pydicom reads them)."""
    values = set(SYNTHETIC_PATIENT.values())
    for path in paths:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not DICOM
            continue
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs"):
            value = str(ds.get(keyword, "") or "").strip()
            if len(value) >= 4:
                values.add(value)
    return values


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """The real workflow, run once on the test collection (report included)."""
    base = tmp_path_factory.mktemp("report_run")
    inputs = build_source(base / "source")
    config = {
        "source": str(base / "source"),
        "output": str(base / "dataset"),
        "work": str(base / "work"),
        "shards": 2,
        "crop": True,
        "crop_max": True,
        "size": [256, 320],
        "report": {"samples_per_modality": SAMPLES_PER_MODALITY},
    }
    cmd = snakemake_command(base, config)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    dataset = base / "dataset"
    return {
        "base": base,
        "dataset": dataset,
        "work": base / "work",
        "report": dataset / "report",
        "inputs": inputs,
        "manifest": pd.read_csv(dataset / "manifest.csv", dtype=str),
    }


# -- independent views of the run ------------------------------------------------------


def sha256_order(uids) -> list[str]:
    """The documented sample order: by the hex SHA-256 of the SOP Instance UID."""
    return sorted(uids, key=lambda u: (hashlib.sha256(u.encode()).hexdigest(), u))


def source_headers(paths: list[Path]) -> dict[str, pydicom.Dataset]:
    """SOP Instance UID -> header of the first input (sorted paths) that has it."""
    headers = {}
    for path in sorted(paths):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not DICOM
            continue
        if "PixelData" in ds or "Rows" in ds:
            headers.setdefault(str(ds.SOPInstanceUID), ds)
    return headers


def tiff_tags(path: Path) -> dict:
    """Crop origin, crop size, active area and the central page of an output TIFF."""
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        page = tif.pages[len(tif.pages) // 2].asarray()
        return {
            "origin": tuple(int(v) for v in tags[CROP_ORIGIN_TAG].value),
            "size": tuple(int(v) for v in tags[CROP_SIZE_TAG].value),
            "active": tuple(int(v) for v in tags[ACTIVE_AREA_TAG].value),
            "page": page,
        }


def chart_bars(page: str, chart_id: str) -> list[tuple[str, int]]:
    """(label, count) of every bar of the chart ``chart_id`` in the page."""
    match = re.search(
        rf'<figure class="chart" id="{re.escape(chart_id)}">(.*?)</figure>', page, re.S
    )
    assert match, f"no chart {chart_id}"
    bars = re.findall(r'<rect class="bar"[^>]*data-label="([^"]*)" data-count="(\d+)"', match[1])
    return [(html.unescape(label), int(count)) for label, count in bars]


@pytest.fixture(scope="module")
def run_facts(finished_run):
    """Modalities, sources and expected samples of the run, read without the report."""
    manifest = finished_run["manifest"]
    headers = source_headers(finished_run["inputs"])
    modality = {u: str(headers[u].Modality) for u in manifest["sop_instance_uid"]}
    by_modality: dict[str, list[str]] = {}
    for uid in manifest["sop_instance_uid"]:
        by_modality.setdefault(modality[uid], []).append(uid)
    expected = {m: sha256_order(u)[:SAMPLES_PER_MODALITY] for m, u in sorted(by_modality.items())}
    return {"headers": headers, "by_modality": by_modality, "expected_samples": expected}


# -- the report's content ----------------------------------------------------------------


@pytest.mark.slow
def test_report_shows_counts_samples_failures_and_studies(finished_run, run_facts):
    page = (finished_run["report"] / "index.html").read_text()
    summary = json.loads((finished_run["work"] / "summary.json").read_text())
    assert (summary["processed"], summary["duplicate"]) == (8, 1)
    for status in ("processed", "skipped", "duplicate", "failed"):
        assert f'<div class="n">{summary[status]}</div><div class="l">{status}</div>' in page
    # per modality, the SOP UIDs with the smallest SHA-256, in that order
    expected = run_facts["expected_samples"]
    assert sorted(expected) == ["CR", "CT", "MR", "US"]
    manifest = finished_run["manifest"]
    shown = re.findall(r'<img src="img/([^"]+)\.source\.png"', page)
    assert shown == [uid for m in sorted(expected) for uid in expected[m]]
    for modality, uids in run_facts["by_modality"].items():
        assert f"{modality} — {min(len(uids), SAMPLES_PER_MODALITY)} of {len(uids)}" in page
    assert "CT — 2 of 3" in page
    images_on_disk = sorted(p.name for p in (finished_run["report"] / "img").glob("*.png"))
    assert images_on_disk == sorted(
        f"{u}.{kind}.png" for u in shown for kind in ("source", "output")
    )
    # the 10-frame MR volume is labelled with its handling, the crop and scale are shown
    assert "volume of 10 frames: keep 10 frames" in page
    assert "central frame 6 of 10" in page and "page 6 of 10" in page
    assert "crop (" in page and "active area (" in page
    # not converted: by relative path, with reasons
    assert "bad/notes.dcm" in page and "not a DICOM file" in page
    assert "zz/CT_again.dcm" in page and "same SOP Instance UID as real/CT_small.dcm" in page
    assert str(finished_run["base"]) not in page
    # one section per study, with its series
    for study in set(manifest["study_instance_uid"]):
        assert f'<span class="uid">{study}</span>' in page
    # self-contained: no scripts, no remote references (the SVG namespace is not fetched)
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)


@pytest.mark.slow
def test_report_holds_no_patient_data(finished_run):
    values = patient_values(finished_run["inputs"])
    assert SYNTHETIC_PATIENT["PatientName"] in values and "CompressedSamples^CT1" in values
    files = [p for p in finished_run["report"].rglob("*") if p.is_file()]
    assert len(files) > 2
    for path in files:
        data_bytes = path.read_bytes().lower()
        for value in values:
            for form in {value, value.replace("^", " "), value.replace("^", ", ")}:
                if len(form) < 4:
                    continue
                if form.replace(".", "").isdigit():  # a number: as a whole token only,
                    # not as digits inside a size, mtime or UID the report rightly holds
                    token = rb"(?<![0-9.])" + re.escape(form.encode()) + rb"(?![0-9.])"
                    assert not re.search(token, data_bytes), f"{form!r} in {path.name}"
                else:
                    assert form.lower().encode() not in data_bytes, f"{form!r} in {path.name}"


@pytest.mark.slow
def test_thumbnails_show_the_crop_box_and_active_area_of_the_tiff(finished_run, run_facts):
    img = finished_run["report"] / "img"
    manifest = finished_run["manifest"].set_index("sop_instance_uid")
    checked = 0
    for uids in run_facts["expected_samples"].values():
        for uid in uids:
            ds = run_facts["headers"][uid]
            rows, columns = int(ds.Rows), int(ds.Columns)
            tags = tiff_tags(finished_run["dataset"] / manifest.loc[uid, "path"])
            with Image.open(img / f"{uid}.source.png") as im:
                assert im.format == "PNG" and im.mode == "RGB"
                source = np.asarray(im)
            # scaled by one factor so that the longer side is 256 pixels
            s = 256 / max(rows, columns)
            assert source.shape == (round(rows * s), round(columns * s), 3)
            x0, y0 = tags["origin"]
            x1, y1 = x0 + tags["size"][0], y0 + tags["size"][1]
            corner = (int(np.floor(y0 * s)), int(np.floor(x0 * s)))
            assert tuple(source[corner]) == CROP_RGB, uid
            far = (
                min(int(np.ceil(y1 * s)), source.shape[0]) - 1,
                min(int(np.ceil(x1 * s)), source.shape[1]) - 1,
            )
            assert tuple(source[far]) == CROP_RGB, uid
            with Image.open(img / f"{uid}.output.png") as im:
                output = np.asarray(im.convert("RGB"))
            page = tags["page"]
            t = 256 / max(page.shape[:2])
            assert output.shape[:2] == (round(page.shape[0] * t), round(page.shape[1] * t))
            left, top, right, bottom = tags["active"]
            assert tuple(output[int(np.floor(top * t)), int(np.floor(left * t))]) == ACTIVE_RGB
            if left > 4:  # padding on the left: black, blended with the padding colour
                pad = output[output.shape[0] // 2, 0].astype(int)
                assert np.abs(pad - np.round(np.array(PADDING_RGB) * 0.45)).max() <= 1, uid
            if top > 4:
                pad = output[0, output.shape[1] // 2].astype(int)
                assert np.abs(pad - np.round(np.array(PADDING_RGB) * 0.45)).max() <= 1, uid
            checked += 1
    assert checked == 7


@pytest.mark.slow
def test_plots_hold_the_numbers_of_the_manifest_and_the_tiffs(finished_run, run_facts):
    page = (finished_run["report"] / "index.html").read_text()
    manifest = pd.read_csv(finished_run["dataset"] / "manifest.csv")
    # output sizes: files per width x height
    sizes = manifest.groupby(["width", "height"]).size()
    expected_sizes = sorted(
        ((f"{w} × {h}", int(n)) for (w, h), n in sizes.items()),
        key=lambda item: (-item[1], item[0]),
    )
    assert sorted(chart_bars(page, "plot-sizes"), key=lambda i: (-i[1], i[0])) == expected_sizes
    # crop fraction: crop size tag / source rows x columns, in bins of 0.05
    fractions = []
    for uid, path in zip(manifest["sop_instance_uid"], manifest["path"], strict=True):
        ds = run_facts["headers"][uid]
        cw, ch = tiff_tags(finished_run["dataset"] / path)["size"]
        fractions.append(cw * ch / (int(ds.Rows) * int(ds.Columns)))
    counts, _ = np.histogram(np.clip(fractions, 0, 1), bins=np.linspace(0, 1, 21))
    crop = chart_bars(page, "plot-crop")
    assert [c for _, c in crop] == counts.tolist() and sum(counts) == len(manifest) == 8
    assert crop[0][0] == "0.00–0.05" and crop[-1][0] == "0.95–1.00"
    # intensity: displayed values (high byte of uint16) inside the active area of the
    # sampled outputs' central pages, in bins of 8 values, 0 and 255 left out
    paths = dict(zip(manifest["sop_instance_uid"], manifest["path"], strict=True))
    for modality, uids in run_facts["expected_samples"].items():
        total = np.zeros(256, np.int64)
        for uid in uids:
            tags = tiff_tags(finished_run["dataset"] / paths[uid])
            values = tags["page"]
            assert values.dtype in (np.uint8, np.uint16)
            shown = values if values.dtype == np.uint8 else (values // 256).astype(np.uint8)
            left, top, right, bottom = tags["active"]
            total += np.bincount(shown[top:bottom, left:right].ravel(), minlength=256)
        bars = chart_bars(page, f"plot-intensity-{modality}")
        at_ends = total[[0, 255]].tolist()
        total[[0, 255]] = 0
        assert [c for _, c in bars] == total.reshape(32, 8).sum(axis=1).tolist(), modality
        assert bars[0][0] == "1–7" and bars[-1][0] == "248–254"
        assert f"{sum(at_ends) + total.sum():,} pixels of" in page


@pytest.mark.slow
def test_rebuilding_the_report_is_stable_and_removes_stale_thumbnails(finished_run, tmp_path):
    dataset, work = finished_run["dataset"], finished_run["work"]
    report = tmp_path / "report" / "index.html"
    stale = report.parent / "img" / "1.2.3.source.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    kwargs = dict(
        output_root=dataset,
        manifest_csv=dataset / "manifest.csv",
        failures_csv=dataset / "failures.csv",
        summary_json=work / "summary.json",
        catalog=work / "catalog.parquet",
        results=sorted((work / "shards").glob("*.results.jsonl")),
        options=Options(crop=True, crop_max=True, size=(256, 320)),
        samples_per_modality=1,
    )
    numbers = build_report(report, **kwargs)
    assert numbers["sample_errors"] == 0 and not stale.exists()
    first = {p.name: p.read_bytes() for p in (report.parent / "img").iterdir()}
    # one sample per modality (CR, CT, MR, US): two thumbnails and a record each
    assert numbers["samples"] == 4 and numbers["samples_reused"] == 0 and len(first) == 12
    page = report.read_text()
    again = build_report(report, **kwargs)
    assert again["samples_reused"] == 4
    assert report.read_text() == page
    assert {p.name: p.read_bytes() for p in (report.parent / "img").iterdir()} == first

    # rendered in two processes: the same page and thumbnails
    shutil.rmtree(report.parent)
    build_report(report, processes=2, **kwargs)
    assert report.read_text() == page
    assert {p.name: p.read_bytes() for p in (report.parent / "img").iterdir()} == first

    # a TIFF written anew (same bytes, new mtime) has its thumbnails rendered again
    sop = sorted(first)[0].split(".json")[0].split(".source.png")[0].split(".output.png")[0]
    manifest = pd.read_csv(dataset / "manifest.csv", dtype=str)
    [relative] = manifest.loc[manifest["sop_instance_uid"] == sop, "path"]
    tiff = dataset / relative
    os.utime(tiff, ns=(tiff.stat().st_atime_ns, tiff.stat().st_mtime_ns + 10**9))
    third = build_report(report, **kwargs)
    assert third["samples_reused"] == 3
    assert report.read_text() == page

    # WebP thumbnails: the PNG files are replaced, the pixels are the same
    webp = build_report(report, image_format="webp", **kwargs)
    assert webp["samples_reused"] == 0 and not list((report.parent / "img").glob("*.png"))
    for name, data_bytes in first.items():
        if name.endswith(".png"):
            with Image.open(report.parent / "img" / name.replace(".png", ".webp")) as im:
                assert im.format == "WEBP"
                with Image.open(io.BytesIO(data_bytes)) as png:
                    assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(png))


@pytest.mark.slow
def test_values_from_the_data_are_escaped(finished_run, tmp_path):
    dataset, work = finished_run["dataset"], finished_run["work"]
    failures = pd.read_csv(dataset / "failures.csv", dtype=str, keep_default_na=False)
    hostile = {
        "path": "/x/<img src=x onerror=alert(1)>.dcm",
        "status": "failed",
        "stage": "decode",
        "error_type": "Bad<b>",
        "message": '<script>alert("x")</script>',
    }
    failures = pd.concat([failures, pd.DataFrame([hostile])], ignore_index=True)
    failures.to_csv(tmp_path / "failures.csv", index=False)
    report = tmp_path / "report" / "index.html"
    build_report(
        report,
        output_root=dataset,
        manifest_csv=dataset / "manifest.csv",
        failures_csv=tmp_path / "failures.csv",
        catalog=work / "catalog.parquet",
        samples_per_modality=0,
    )
    page = report.read_text()
    assert "<script" not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "Bad&lt;b&gt;" in page


# -- the page in a browser ---------------------------------------------------------------


class DevTools:
    """A minimal Chrome DevTools Protocol client over `--remote-debugging-pipe`."""

    def __init__(self, args: list[str], stderr):
        cmd_read, self._cmd_write = os.pipe()  # the browser reads commands from fd 3
        self._resp_read, resp_write = os.pipe()  # and writes replies and events to fd 4

        def child_fds():
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (cmd_read, resp_write)]
            for target, fd in zip((3, 4), high, strict=True):
                os.dup2(fd, target)
                os.set_inheritable(target, True)

        self.proc = subprocess.Popen(
            args + ["--remote-debugging-pipe"],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            preexec_fn=child_fds,
            close_fds=False,
        )
        os.close(cmd_read)
        os.close(resp_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._cmd_write, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(deadline=time.monotonic() + 30)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, after: int = 0, timeout: float = 30) -> dict:
        """The first event ``method`` among the events from index ``after`` on."""
        for event in self.events[after:]:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout
        while True:
            event = self._read(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._resp_read], [], [], left)[0]:
                raise TimeoutError("no answer from the browser")
            chunk = os.read(self._resp_read, 1 << 20)
            if not chunk:
                raise RuntimeError("the browser closed the pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self.send("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_write)
        os.close(self._resp_read)


IMAGES_JS = """JSON.stringify([...document.images].map(i => ({
    src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth,
    height: i.naturalHeight})))"""
# Every chart text's box as the browser lays it out, with its chart's viewBox size.
TEXT_BOXES_JS = """JSON.stringify([...document.querySelectorAll('figure.chart svg')].flatMap(
    svg => [...svg.querySelectorAll('text')].map(t => { const b = t.getBBox(); return {
        chart: svg.closest('figure').id, text: t.textContent, x0: b.x, x1: b.x + b.width,
        y0: b.y, y1: b.y + b.height, width: svg.viewBox.baseVal.width,
        height: svg.viewBox.baseVal.height}; })))"""


@pytest.mark.browser
@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (install the Debian package 'chromium')"
)
def test_report_renders_in_chromium(finished_run, tmp_path):
    page = (finished_run["report"] / "index.html").resolve()
    profile = tmp_path / "profile"
    profile.mkdir()
    args = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-extensions",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={profile}",
        "--window-size=1280,2000",
        "about:blank",
    ]
    with open(tmp_path / "chromium.log", "wb") as log:
        browser = DevTools(args, log)
        try:
            target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
                "sessionId"
            ]
            for domain in ("Page", "Runtime", "Log", "Network"):
                browser.send(f"{domain}.enable", session=session)
            browser.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": 1280, "height": 2000, "deviceScaleFactor": 1, "mobile": False},
                session=session,
            )
            start = len(browser.events)
            browser.send("Page.navigate", {"url": page.as_uri()}, session=session)
            browser.wait_for("Page.loadEventFired", after=start)
            result = browser.send(
                "Runtime.evaluate",
                {"expression": IMAGES_JS, "returnByValue": True},
                session=session,
            )
            images = json.loads(result["result"]["value"])
            result = browser.send(
                "Runtime.evaluate",
                {"expression": TEXT_BOXES_JS, "returnByValue": True},
                session=session,
            )
            boxes = json.loads(result["result"]["value"])
            shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)
            (tmp_path / "report.png").write_bytes(base64.b64decode(shot["data"]))
            time.sleep(0.2)  # let late console or log events arrive
            browser.send("Runtime.evaluate", {"expression": "1"}, session=session)
        finally:
            browser.close()

    names = sorted(p.name for p in (finished_run["report"] / "img").glob("*.png"))
    assert len(names) == 14
    assert sorted(i["src"] for i in images) == [f"img/{n}" for n in names]
    assert images and all(i["complete"] and i["width"] > 0 for i in images), images
    events = browser.events
    errors = [
        e["params"]
        for e in events
        if e.get("method") in ("Runtime.exceptionThrown", "Network.loadingFailed")
        or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]
    assert not errors, errors
    requests = [
        e["params"]["request"]["url"]
        for e in events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    assert requests and all(u.startswith(("file://", "data:")) for u in requests), requests
    screenshot = (tmp_path / "report.png").read_bytes()
    assert screenshot.startswith(b"\x89PNG") and len(screenshot) > 10_000
    # no axis or bar label is cut off by its chart's edge (the "256" under the right end of
    # the intensity charts and six-digit counts at their left were)
    assert len(boxes) > 20
    clipped = [
        b
        for b in boxes
        if b["x0"] < 0 or b["y0"] < 0 or b["x1"] > b["width"] or b["y1"] > b["height"]
    ]
    assert not clipped, clipped


# -- library pieces ----------------------------------------------------------------------


def test_samples_are_the_smallest_sha256_per_modality():
    uids = [f"1.2.3.{k}" for k in range(30)]
    table = pd.DataFrame(
        {
            "sop_instance_uid": uids,
            "modality": ["CT" if k % 3 else "MR" for k in range(30)],
            "status": ["processed"] * 29 + ["failed"],
            "tiff": [f"s/{u}.tiff" for u in uids],
        }
    )
    chosen = data.choose_samples(table, 4)
    assert list(chosen) == ["CT", "MR"]
    for modality, rows in chosen.items():
        pool = [u for k, u in enumerate(uids[:29]) if ("CT" if k % 3 else "MR") == modality]
        assert list(rows["sop_instance_uid"]) == sha256_order(pool)[:4]
    # hand-checked: the smallest hashes among the CT UIDs
    assert (
        list(chosen["CT"]["sop_instance_uid"])
        == sha256_order([u for k, u in enumerate(uids) if k % 3 and k != 29])[:4]
    )
    shuffled = table.sample(frac=1, random_state=1)
    again = data.choose_samples(shuffled, 4)
    assert all(
        list(again[m]["sop_instance_uid"]) == list(chosen[m]["sop_instance_uid"]) for m in chosen
    )
    assert data.choose_samples(table, 0) == {}
    assert list(data.first_by_key(table, 5)["sop_instance_uid"]) == sha256_order(uids[:29])[:5]


def test_volume_labels_name_the_handling():
    assert data.volume_label(1, 1, Options()) == ""
    assert data.volume_label(9, 9, Options()) == "volume of 9 frames: keep 9 frames"
    central = data.volume_label(9, 1, Options(volume="central-slice"))
    assert central == "volume of 9 frames: central slice (frame 5)"
    assert "maximum-intensity" in data.volume_label(9, 1, Options(volume="max-intensity"))
    interpolated = data.volume_label(9, 4, Options(volume="interpolate", target_frames=4))
    assert interpolated == "volume of 9 frames: interpolated to 4 frames"


def test_thumbnails_mark_crop_box_and_padding(tmp_path):
    page = np.full((100, 50), 40000, np.uint16)
    page[:, :10] = 0  # padding on the left: active area (10, 0, 50, 100)
    images.save_image(tmp_path / "out.png", images.output_thumbnail(page, (10, 0, 50, 100), 100))
    with Image.open(tmp_path / "out.png") as im:
        assert im.format == "PNG" and im.size == (50, 100)
        thumb = np.asarray(im)
    tint = np.round(np.array(PADDING_RGB) * 0.45)
    assert np.abs(thumb[50, 2].astype(int) - tint).max() <= 1  # black padding, tinted
    assert tuple(thumb[50, 10]) == tuple(thumb[50, 11]) == ACTIVE_RGB  # 2-pixel outline
    assert tuple(thumb[0, 30]) == tuple(thumb[99, 30]) == tuple(thumb[50, 49]) == ACTIVE_RGB
    assert tuple(thumb[50, 30]) == (156, 156, 156)  # 40000 // 256
    source = np.zeros((400, 200), np.uint8)
    images.save_image(
        tmp_path / "src.png", images.source_thumbnail(source, (20, 40, 120, 200), 100)
    )
    with Image.open(tmp_path / "src.png") as im:
        assert im.size == (50, 100)
        thumb = np.asarray(im)
    # the box scaled by 1/4: (5, 10)-(30, 50), outlined inside its edge
    assert tuple(thumb[10, 5]) == tuple(thumb[49, 29]) == tuple(thumb[10, 29]) == CROP_RGB
    outside = np.round(np.array(OUTSIDE_CROP_RGB) * 0.45)
    assert np.abs(thumb[0, 0].astype(int) - outside).max() <= 1
    assert np.abs(thumb[60, 20].astype(int) - outside).max() <= 1  # below the box
    assert tuple(thumb[30, 20]) == (0, 0, 0)  # inside the box, untouched
    # a small source is enlarged without smoothing
    small = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16
    enlarged = np.asarray(images.source_thumbnail(small, (0, 0, 4, 4), 8))
    assert enlarged.shape == (8, 8, 3) and tuple(enlarged[4, 4]) == (160, 160, 160)


def test_image_files_round_trip_and_depend_on_pixels_only(tmp_path):
    rng = np.random.default_rng(3)
    for fmt in ("png", "webp"):
        for shape in [(5, 7, 3), (1, 1, 3), (6, 4)]:
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            path = tmp_path / f"{len(shape)}.{fmt}"
            images.save_image(path, Image.fromarray(pixels), fmt)
            with Image.open(path) as im:
                assert im.format == fmt.upper()
                assert np.array_equal(np.asarray(im.convert(Image.fromarray(pixels).mode)), pixels)
            before = path.read_bytes()
            images.save_image(path, Image.fromarray(pixels), fmt)
            assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_display_conversion_and_histogram():
    values = np.array([[-1000, 0], [1000, 3000]], np.int16)
    assert images.to_display(values).tolist() == [[0, 64], [128, 255]]
    assert images.to_display(np.zeros((2, 2), np.float32)).tolist() == [[0, 0], [0, 0]]
    assert images.to_display(np.array([[0, 65535]], np.uint16)).tolist() == [[0, 255]]
    shown = np.array([[0, 7, 7], [255, 7, 9]], np.uint8)
    counts = images.display_histogram(shown, (1, 0, 3, 2))  # columns 1-2
    assert len(counts) == 256 and sum(counts) == 4
    assert (counts[7], counts[9], counts[0], counts[255]) == (3, 1, 0, 0)
    rng = np.random.default_rng(5)
    for shape in [(37, 53), (37, 53, 3)]:  # grey and colour: every channel counted
        shown = rng.integers(0, 256, shape, dtype=np.uint8)
        box = (3, 5, 41, 30)
        expected = np.bincount(shown[5:30, 3:41].ravel(), minlength=256).tolist()
        assert images.display_histogram(shown, box) == expected
    assert images.display_histogram(shown, (4, 4, 4, 9)) == [0] * 256  # an empty box


def test_size_counts_keep_the_most_frequent_sizes():
    sizes = [(512, 640)] * 5 + [(256, 320)] * 3 + [(100 + k, 200) for k in range(14)]
    manifest = pd.DataFrame(sizes, columns=["width", "height"])
    items = plots.size_counts(manifest, max_bars=4)
    assert items == [("512 × 640", 5), ("256 × 320", 3), ("100 × 200", 1), ("13 other sizes", 13)]
    assert sum(n for _, n in items) == len(sizes)
    chart = plots.size_chart(items)
    assert [(b.label, b.count) for b in chart.bars] == items
    assert chart.bars[0].width > chart.bars[1].width > chart.bars[2].width > 0


def test_crop_tags_are_cached_and_read_again_when_a_tiff_changes(finished_run, run_facts, tmp_path):
    manifest = pd.read_csv(finished_run["dataset"] / "manifest.csv")
    uid, path = manifest["sop_instance_uid"][0], manifest["path"][0]
    rows_, columns = int(run_facts["headers"][uid].Rows), int(run_facts["headers"][uid].Columns)
    root = tmp_path / "out"  # a copy: the run's own files stay as they are
    (root / path).parent.mkdir(parents=True)
    shutil.copy2(finished_run["dataset"] / path, root / path)
    rows = pd.DataFrame({"tiff": [path], "source_width": [columns], "source_height": [rows_]})
    cw, ch = tiff_tags(root / path)["size"]
    expected = min(cw * ch / (rows_ * columns), 1.0)
    cache = tmp_path / "report" / "crop_tags.json"

    assert plots.crop_fractions(rows, root, cache).tolist() == pytest.approx([expected])
    st = os.stat(root / path)
    assert json.loads(cache.read_text()) == {path: [st.st_size, st.st_mtime_ns, cw, ch]}
    # while the TIFF is unchanged the cache is what is read: a planted crop size shows
    cache.write_text(json.dumps({path: [st.st_size, st.st_mtime_ns, 1, 1]}))
    planted = plots.crop_fractions(rows, root, cache).tolist()
    assert planted == pytest.approx([1 / (rows_ * columns)])
    # a TIFF with another modification time is read again, and the cache follows it
    os.utime(root / path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert plots.crop_fractions(rows, root, cache).tolist() == pytest.approx([expected])
    assert json.loads(cache.read_text())[path] == [st.st_size, st.st_mtime_ns + 10**9, cw, ch]
    # a damaged cache is ignored and rewritten
    cache.write_text("{not json")
    assert plots.crop_fractions(rows, root, cache).tolist() == pytest.approx([expected])
    assert json.loads(cache.read_text())[path][2:] == [cw, ch]
    # a TIFF that went away is left out (and out of the cache)
    (root / path).unlink()
    assert plots.crop_fractions(rows, root, cache).tolist() == []
    assert json.loads(cache.read_text()) == {}


def test_crop_fraction_bins():
    fractions = np.array([0.0, 0.049, 0.05, 0.5, 0.97, 1.0])
    chart = plots.crop_fraction_chart(fractions, outputs=10)
    counts = [b.count for b in chart.bars]
    assert len(counts) == 20 and sum(counts) == 6
    assert counts[0] == 2 and counts[1] == 1 and counts[10] == 1 and counts[19] == 2
    assert "6 of 10 outputs" in chart.note
    tallest = max(chart.bars, key=lambda b: b.height)
    assert tallest.count == 2 and tallest.height == plots.PLOT_HEIGHT


def test_intensity_histograms_sum_per_modality():
    a, b = np.zeros(256, int), np.zeros(256, int)
    a[0], a[255], b[8] = 3, 1, 2
    totals = plots.intensity_histograms([("MR", a), ("CT", b), ("MR", b), ("US", [1, 2])])
    assert list(totals) == ["CT", "MR"]
    chart = plots.intensity_chart("MR", totals["MR"], samples=2)
    # 0 (3 pixels) and 255 (1) are left out of the bars and named in the note
    assert [b.count for b in chart.bars][:2] == [0, 2] and chart.bars[-1].count == 0
    assert chart.total == 2 and chart.id == "plot-intensity-MR"
    assert chart.note == (
        "6 pixels of 2 sampled outputs; left out of the bars: 50.0\u00a0% at 0, 16.7\u00a0% at 255"
    )


def test_paths_are_shown_relative_to_the_common_input_folder():
    paths = ["/data/a/x.dcm", "/data/a/sub/y.dcm", "/data/a/z.txt"]
    assert data.common_folder(paths) == "/data/a"
    assert data.common_folder(["/data/a/x.dcm"]) == "/data/a"
    assert data.relative_to("/data/a/sub/y.dcm", "/data/a") == "sub/y.dcm"
    assert data.relative_to("/elsewhere/y.dcm", "/data/a") == "/elsewhere/y.dcm"
    assert data.strip_folder("same as /data/a/x.dcm", "/data/a") == "same as x.dcm"


def test_each_shards_first_files_hold_the_reports_sample():
    """The report's sample (first n per modality over the dataset) is among the files the
    shards mark for thumbnails (each shard's own first n per modality)."""
    import random

    from dicomprep.report.sampling import first_per_modality, sample_key

    rng = random.Random(7)
    files = [(rng.choice(["MG", "CT", "US"]), f"1.2.3.{k}") for k in range(600)]
    shards = [files[k::8] for k in range(8)]
    marked = set().union(*(first_per_modality(shard, 5) for shard in shards))
    assert sum(len(first_per_modality(shard, 5)) for shard in shards) == len(marked) <= 8 * 15
    for modality in ("MG", "CT", "US"):
        uids = sorted((u for m, u in files if m == modality), key=sample_key)
        assert set(uids[:5]) <= marked
        assert first_per_modality([(m, u) for m, u in files if m == modality], 5) == set(uids[:5])


def test_a_nifti_volumes_sample_shows_its_central_page(tmp_path):
    """A stack written as NIfTI (no crop or padding tags): the sample shows its central
    page, whole, counted in the intensity histogram as nibabel reads it."""
    from types import SimpleNamespace

    import nibabel as nib

    from dicomprep.series.volume_file import process_stack

    from .series_helpers import write_series

    series = write_series(tmp_path / "in", count=5, name="report-nifti")
    paths = sorted(series["paths"].values(), key=str)
    by_position = sorted(paths, key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    output = tmp_path / "out" / "volume.nii.gz"
    options = Options(voi="none", volume_format="nifti")
    assert process_stack(by_position, output, options).status == "ok"
    row = SimpleNamespace(
        modality="CT",
        study_instance_uid=series["study"],
        sop_instance_uid=pydicom.dcmread(by_position[0]).SOPInstanceUID,
        path=str(by_position[0]),
        tiff="volume.nii.gz",
        source_frames=1,
        num_frames=5,
    )
    sample = images.render_sample(row, tmp_path / "out", tmp_path / "img", options)
    assert sample.errors == []
    assert (sample.output_frames, sample.output_view) == (5, "page 3 of 5")
    page = np.asarray(nib.load(output).dataobj[:, :, 2]).T
    assert sample.output_size == (page.shape[1], page.shape[0])
    box = (0, 0, page.shape[1], page.shape[0])
    assert sample.histogram == images.display_histogram(images.to_display(page), box)
    assert (tmp_path / "img" / sample.output_image).exists()
