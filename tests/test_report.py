"""The QC report (`{output}/report/index.html`): its content, privacy and how it renders.

One real workflow run on a few pydicom test files (module fixture) feeds the report tests;
the browser test opens the page in headless Chromium through the DevTools protocol (over
`--remote-debugging-pipe`, standard library only) and checks that every image loaded, that
nothing was logged as an error and that no request left the local files.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
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
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from dicomprep import qc
from dicomprep.options import Options

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


# -- the report's content ----------------------------------------------------------------


@pytest.mark.slow
def test_report_shows_counts_samples_failures_and_studies(finished_run):
    page = (finished_run["report"] / "index.html").read_text()
    summary = json.loads((finished_run["work"] / "summary.json").read_text())
    assert (summary["processed"], summary["duplicate"]) == (8, 1)
    for status in ("processed", "skipped", "duplicate", "failed"):
        assert f'<div class="n">{summary[status]}</div><div class="l">{status}</div>' in page
    # two samples of three CT outputs, chosen by the hash of the SOP UID
    assert f"CT — {SAMPLES_PER_MODALITY} of 3" in page
    manifest = finished_run["manifest"]
    sampled = [u for u in manifest["sop_instance_uid"] if f"{u}.source.png" in page]
    images = sorted(p.name for p in (finished_run["report"] / "img").glob("*.png"))
    sops = set(manifest["sop_instance_uid"])
    assert images and all(name.rsplit(".", 2)[0] in sops for name in images)
    assert all(f'src="img/{name}"' in page for name in images)
    assert len(sampled) == len(images) // 2 == 7  # CT 2 of 3, MR 2, CR 1, US 2
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
    # self-contained: no scripts, no remote references
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)


@pytest.mark.slow
def test_report_holds_no_patient_data(finished_run):
    values = patient_values(finished_run["inputs"])
    assert SYNTHETIC_PATIENT["PatientName"] in values and "CompressedSamples^CT1" in values
    files = [p for p in finished_run["report"].rglob("*") if p.is_file()]
    assert len(files) > 2
    for path in files:
        data = path.read_bytes().lower()
        for value in values:
            for form in {value, value.replace("^", " "), value.replace("^", ", ")}:
                if len(form) >= 4:
                    assert form.lower().encode() not in data, f"{form!r} in {path.name}"


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
    numbers = qc.build_report(report, **kwargs)
    assert numbers["sample_errors"] == 0 and not stale.exists()
    first = {p.name: p.read_bytes() for p in (report.parent / "img").iterdir()}
    # one sample per modality (CR, CT, MR, US): two thumbnails and a record each
    assert numbers["samples"] == 4 and numbers["samples_reused"] == 0 and len(first) == 12
    page = report.read_text()
    again = qc.build_report(report, **kwargs)
    assert again["samples_reused"] == 4
    assert report.read_text() == page
    assert {p.name: p.read_bytes() for p in (report.parent / "img").iterdir()} == first

    # rendered in two processes: the same page and thumbnails
    shutil.rmtree(report.parent)
    qc.build_report(report, processes=2, **kwargs)
    assert report.read_text() == page
    assert {p.name: p.read_bytes() for p in (report.parent / "img").iterdir()} == first

    # a TIFF written anew (same bytes, new mtime) has its thumbnails rendered again
    sop = sorted(first)[0].split(".json")[0].split(".source.png")[0].split(".output.png")[0]
    manifest = pd.read_csv(dataset / "manifest.csv", dtype=str)
    [relative] = manifest.loc[manifest["sop_instance_uid"] == sop, "path"]
    tiff = dataset / relative
    os.utime(tiff, ns=(tiff.stat().st_atime_ns, tiff.stat().st_mtime_ns + 10**9))
    third = qc.build_report(report, **kwargs)
    assert third["samples_reused"] == 3
    assert report.read_text() == page


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
            shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)
            (tmp_path / "report.png").write_bytes(base64.b64decode(shot["data"]))
            time.sleep(0.2)  # let late console or log events arrive
            browser.send("Runtime.evaluate", {"expression": "1"}, session=session)
        finally:
            browser.close()

    names = sorted(p.name for p in (finished_run["report"] / "img").glob("*.png"))
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


# -- library pieces ----------------------------------------------------------------------


def test_png_writer_round_trips(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    rng = np.random.default_rng(3)
    for shape in [(5, 7), (6, 4, 3), (1, 1)]:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        path = tmp_path / f"{len(shape)}.png"
        qc.write_png(path, image)
        assert np.array_equal(iio.imread(path), image)
        before = path.read_bytes()
        qc.write_png(path, image)
        assert path.read_bytes() == before
    with pytest.raises(ValueError):
        qc.write_png(tmp_path / "x.png", np.zeros((2, 2), np.uint16))


def test_samples_are_the_smallest_hashes_per_modality():
    uids = [f"1.2.3.{k}" for k in range(30)]
    table = pd.DataFrame(
        {
            "sop_instance_uid": uids,
            "modality": ["CT" if k % 3 else "MR" for k in range(30)],
            "status": ["processed"] * 29 + ["failed"],
            "tiff": [f"s/{u}.tiff" for u in uids],
        }
    )
    chosen = qc.choose_samples(table, 4)
    assert list(chosen) == ["CT", "MR"]
    for modality, rows in chosen.items():
        pool = table[(table["modality"] == modality) & (table["status"] == "processed")]
        expected = sorted(pool["sop_instance_uid"], key=qc.sample_key)[:4]
        assert list(rows["sop_instance_uid"]) == expected
    shuffled = table.sample(frac=1, random_state=1)
    again = qc.choose_samples(shuffled, 4)
    assert all(
        list(again[m]["sop_instance_uid"]) == list(chosen[m]["sop_instance_uid"]) for m in chosen
    )
    assert qc.choose_samples(table, 0) == {}


def test_volume_labels_name_the_handling():
    assert qc.volume_label(1, 1, Options()) == ""
    assert qc.volume_label(9, 9, Options()) == "volume of 9 frames: keep 9 frames"
    central = qc.volume_label(9, 1, Options(volume="central-slice"))
    assert central == "volume of 9 frames: central slice (frame 5)"
    assert "maximum-intensity" in qc.volume_label(9, 1, Options(volume="max-intensity"))
    interpolated = qc.volume_label(9, 4, Options(volume="interpolate", target_frames=4))
    assert interpolated == "volume of 9 frames: interpolated to 4 frames"


def test_thumbnails_mark_crop_box_and_padding():
    page = np.full((100, 50), 40000, np.uint16)
    page[:, :10] = 0  # padding on the left: active area (10, 0, 50, 100)
    thumb = qc.output_thumbnail(page, (10, 0, 50, 100), size=100)
    assert thumb.shape == (100, 50, 3) and thumb.dtype == np.uint8
    assert tuple(thumb[50, 2]) == tuple(
        round(c * qc.TINT) for c in qc.PADDING_COLOUR
    )  # black padding, tinted
    assert tuple(thumb[50, 10]) == qc.ACTIVE_COLOUR
    assert tuple(thumb[50, 30]) == (156, 156, 156)  # 40000 >> 8
    source = np.zeros((400, 200), np.uint8)
    thumb = qc.source_thumbnail(source, (20, 40, 120, 200), size=100)
    assert thumb.shape == (100, 50, 3)
    assert tuple(thumb[10, 5]) == qc.CROP_COLOUR  # the box's top-left corner
    assert tuple(thumb[0, 0]) == tuple(round(c * qc.TINT) for c in qc.OUTSIDE_CROP_COLOUR)
    assert tuple(thumb[30, 20]) == (0, 0, 0)  # inside the box, untouched


def test_display_conversion_of_signed_and_float_outputs():
    values = np.array([[-1000, 0], [1000, 3000]], np.int16)
    assert qc.to_display(values).tolist() == [[0, 64], [128, 255]]
    assert qc.to_display(np.zeros((2, 2), np.float32)).tolist() == [[0, 0], [0, 0]]
    assert qc.to_display(np.array([[0, 65535]], np.uint16)).tolist() == [[0, 255]]


def test_paths_are_shown_relative_to_the_common_input_folder():
    paths = ["/data/a/x.dcm", "/data/a/sub/y.dcm", "/data/a/z.txt"]
    assert qc.common_folder(paths) == "/data/a"
    assert qc.common_folder(["/data/a/x.dcm"]) == "/data/a"
    assert qc.relative_to("/data/a/sub/y.dcm", "/data/a") == "sub/y.dcm"
    assert qc.relative_to("/elsewhere/y.dcm", "/data/a") == "/elsewhere/y.dcm"
