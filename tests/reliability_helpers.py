"""Helpers for the reliability tests: hand-made DICOM bytes, permission denial for root,
a small tmpfs, killing a workflow at a chosen moment, and scanning outputs for text."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pydicom
import tifffile
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.uid import UID

from .workflow_helpers import snakemake_command

# -- DICOM bytes that pydicom refuses to write ------------------------------------------

_LONG_LENGTH_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"}


def raw_element(tag: int, vr: str, value: bytes) -> bytes:
    """One explicit VR little endian element holding ``value`` exactly (padded to even)."""
    if len(value) % 2:
        value += b"\0" if vr in ("OB", "UN", "UI") else b" "
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode("ascii")
    if vr in _LONG_LENGTH_VRS:
        return head + b"\0\0" + struct.pack("<I", len(value)) + value
    value = value[:0xFFFE]
    return head + struct.pack("<H", len(value)) + value


def encode_with_elements(
    ds: Dataset, replacements: dict[str, tuple[str, bytes] | None], transfer_syntax: str = ""
) -> bytes:
    """``ds`` as an explicit VR little endian Part 10 file where the elements named in
    ``replacements`` are written as given ``(vr, raw value bytes)`` or left out (None),
    whatever their dictionary VR says.  ``transfer_syntax`` (if given) goes into the file
    meta as it is, even when it does not match the encoding."""
    tags = {int(tag_for_keyword(keyword)): value for keyword, value in replacements.items()}
    meta = Dataset()
    meta.update(ds.file_meta)
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    fp.write(b"\0" * 128 + b"DICM")
    with warnings.catch_warnings(), pydicom.config.disable_value_validation():
        warnings.simplefilter("ignore")
        if transfer_syntax:
            meta.TransferSyntaxUID = transfer_syntax
        write_file_meta_info(fp, meta, enforce_standard=False)
        for tag in sorted({int(elem.tag) for elem in ds} | set(tags)):
            if tag in tags:
                if tags[tag] is not None:
                    fp.write(raw_element(tag, *tags[tag]))
            else:
                write_data_element(fp, ds[tag])
    return fp.getvalue()


def with_transfer_syntax(ds: Dataset, transfer_syntax: str, *, encapsulated: bool) -> bytes:
    """``ds`` written explicit VR little endian but labelled with another transfer syntax,
    with its pixel data as it is (native) or as one encapsulated fragment."""
    ds = ds.copy()
    if encapsulated:
        ds.PixelData = encapsulate([bytes(ds.PixelData)])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    fp = DicomBytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
        ds.save_as(fp, enforce_file_format=True, implicit_vr=False, little_endian=True)
    return fp.getvalue()


# -- permission denial, even for root -----------------------------------------------------

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def without_file_permission_override() -> None:
    """For ``preexec_fn``: the program about to run gets no capability to ignore file
    permissions (root keeps its uid but a mode-000 file is denied to it, as to anyone)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_CAPBSET_DROP, {cap}): {os.strerror(errno)}")


def reading_is_denied(path: Path) -> bool:
    """True when a program started with :func:`without_file_permission_override` cannot
    open ``path`` (so the permission check is real, not bypassed by root)."""
    probe = f"open({str(path)!r}, 'rb').read(1)"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", probe],
            preexec_fn=without_file_permission_override,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode != 0 and "PermissionError" in proc.stderr


def run_without_permission_override(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd,
        preexec_fn=without_file_permission_override,
        capture_output=True,
        text=True,
        **kwargs,
    )


# -- a small file system -----------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (e.g. ``"3m"``) on ``folder``; unmounted afterwards.

    Raises PermissionError when not root and OSError when the mount fails."""
    if os.geteuid() != 0:
        raise PermissionError("mounting a tmpfs needs root")
    folder.mkdir(parents=True, exist_ok=True)
    mount = shutil.which("mount") or "/bin/mount"
    proc = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise OSError(f"mount -t tmpfs failed: {proc.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run([shutil.which("umount") or "/bin/umount", "-l", str(folder)], check=False)


def resize_tmpfs(folder: Path, size: str) -> None:
    mount = shutil.which("mount") or "/bin/mount"
    subprocess.run(
        [mount, "-o", f"remount,size={size}", str(folder)], check=True, capture_output=True
    )


# -- killing a workflow at a chosen moment -----------------------------------------------


def start_snakemake(workdir: Path, config: dict, env: dict | None = None) -> subprocess.Popen:
    """The project's workflow in ``workdir`` as a process group of its own."""
    env = dict(env or os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return subprocess.Popen(
        snakemake_command(workdir, config),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def environment_with_hook(folder: Path, source: str, **variables: str) -> dict:
    """The environment of a process whose Python runs ``source`` at start-up (as
    ``sitecustomize``, written to ``folder``): how a test stops a run at an exact point
    of the real code, in every process of the run."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(source)
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **variables}


# Kills the whole run (its process group) when a TIFF writer starts its second page (a
# multi-page TIFF is then half written in its temporary), or with KILL_DURING_GZIP_WRITE
# at a gzip stream's second write. Only for a run started in a session of its own.
KILL_DURING_WRITE = """
import os
import signal

if os.environ.get("KILL_DURING_TIFF_WRITE"):
    import tifffile

    original = tifffile.TiffWriter.write

    def write(self, *args, **kwargs):
        self._pages_begun = getattr(self, "_pages_begun", 0) + 1
        if self._pages_begun == 2:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        return original(self, *args, **kwargs)

    tifffile.TiffWriter.write = write

if os.environ.get("KILL_DURING_GZIP_WRITE"):  # a NIfTI volume half written
    import gzip

    original_gzip_write = gzip.GzipFile.write

    def gzip_write(self, data):
        self._written_calls = getattr(self, "_written_calls", 0) + 1
        if self._written_calls == 2:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        return original_gzip_write(self, data)

    gzip.GzipFile.write = gzip_write
"""


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float) -> bool:
    """Poll ``condition`` every few milliseconds while ``proc`` runs; True once it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return condition()
        time.sleep(0.004)
    return False


def kill_group(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGKILL ``proc`` and everything it started (its process group), and wait until no
    process of the group is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    raise TimeoutError(f"processes of group {proc.pid} survived SIGKILL")


# -- looking at outputs --------------------------------------------------------------------


def files_under(*roots: Path) -> list[Path]:
    return sorted(p for root in roots if root.exists() for p in root.rglob("*") if p.is_file())


def temporaries_under(*roots: Path) -> list[Path]:
    return [p for p in files_under(*roots) if p.name.endswith(".tmp")]


def unreadable_tiffs(root: Path) -> list[str]:
    """TIFFs under ``root`` that do not read back completely (every page, every strip)."""
    bad = []
    for path in sorted(root.rglob("*.tiff")):
        try:
            with tifffile.TiffFile(path) as tif:
                for page in tif.pages:
                    data = page.asarray()
                    if data.size == 0 or not np.isfinite(data.astype(np.float64)).all():
                        raise ValueError("empty or non-finite page")
        except Exception as exc:  # noqa: BLE001 - any failure means a damaged file
            bad.append(f"{path}: {type(exc).__name__}: {exc}")
    return bad


def identifying_strings(values: Iterable[str]) -> list[str]:
    """The values and their person-name components long enough to be distinctive."""
    found = set()
    for value in values:
        found.add(value)
        found.update(part for part in value.split("^") if len(part) >= 6)
    return sorted(found)


def leaks(files: Iterable[Path], values: Iterable[str]) -> list[str]:
    """``file: value`` for every file whose bytes contain one of ``values`` (ASCII)."""
    needles = [(v, v.encode("ascii")) for v in identifying_strings(values)]
    found = []
    for path in files:
        data = path.read_bytes()
        found += [f"{path}: {value!r}" for value, needle in needles if needle in data]
    return found
