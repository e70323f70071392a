"""Sources on a plain HTTP server (fsspec's HTTP filesystem, no S3): a `.txt` list of
URLs converts to the TIFFs the same files give from disk; a URL the server does not have
is one failure line.  The server is Python's own, on 127.0.0.1, serving a temporary folder."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from dicomprep_testdata import synthetic

from dicomprep.cli import preprocess_main
from dicomprep.storage.objects import object_facts


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request lines in the test output
        pass


@pytest.fixture
def http_folder(tmp_path):
    """(folder served, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def tiffs(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.tiff"))}


def test_an_objects_facts_come_from_a_head_request(http_folder):
    folder, base = http_folder
    path = synthetic.write(synthetic.mammogram(rows=64, columns=48, seed=1), folder / "m.dcm")
    facts = object_facts(f"{base}/m.dcm")
    assert (facts.url, facts.size) == (f"{base}/m.dcm", path.stat().st_size)
    with pytest.raises(FileNotFoundError):
        object_facts(f"{base}/absent.dcm")


def test_a_list_of_http_urls_gives_the_tiffs_of_the_same_files_on_disk(http_folder, tmp_path):
    folder, base = http_folder
    names = [f"m{k}.dcm" for k in range(3)]
    for k, name in enumerate(names):
        synthetic.write(synthetic.mammogram(rows=96, columns=72, seed=k), folder / name)
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{base}/{n}\n" for n in [*names, "absent.dcm"]))
    options = ["-c", "-m", "-s", "48,64", "-j", "2"]
    assert preprocess_main([str(listing), str(tmp_path / "web"), *options]) == 1
    assert preprocess_main([str(folder), str(tmp_path / "disk"), *options]) == 0
    web = tiffs(tmp_path / "web")
    assert len(web) == 3 and web == tiffs(tmp_path / "disk")
    failures = pd.read_csv(tmp_path / "web" / "failures.csv")
    assert failures["path"].tolist() == [f"{base}/absent.dcm"]
    assert failures["error_type"].tolist() == ["NotFound"]


def test_a_series_listed_as_http_urls_becomes_the_volume_of_the_same_files_on_disk(
    http_folder, tmp_path
):
    from .series_helpers import write_series

    folder, base = http_folder
    write_series(folder, count=5, name="http-series")
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{base}/{p.name}\n" for p in sorted(folder.glob("*.dcm"))))
    options = ["--series", "stack", "--voi", "none", "-j", "2"]
    assert preprocess_main([str(listing), str(tmp_path / "web"), *options]) == 0
    assert preprocess_main([str(folder), str(tmp_path / "disk"), *options]) == 0
    web = tiffs(tmp_path / "web")
    assert len(web) == 1 and web == tiffs(tmp_path / "disk")
    slices = pd.read_csv(tmp_path / "web" / "slices.csv", dtype=str)
    assert len(slices) == 5 and slices["page"].tolist() == [str(k) for k in range(5)]


def test_a_damaged_slice_on_a_web_server_is_named_by_its_url(http_folder, tmp_path):
    from .series_helpers import write_series

    folder, base = http_folder
    write_series(folder, count=4, name="http-damaged")
    names = sorted(p.name for p in folder.glob("*.dcm"))
    victim = folder / names[1]
    victim.write_bytes(victim.read_bytes()[:-3000])
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{base}/{n}\n" for n in names))
    args = [str(listing), str(tmp_path / "web"), "--series", "stack", "-j", "1"]
    assert preprocess_main(args) == 1
    failures = pd.read_csv(tmp_path / "web" / "failures.csv", keep_default_na=False)
    assert failures[["path", "error_type"]].values.tolist() == [[f"{base}/{names[1]}", "Truncated"]]
    slices = pd.read_csv(tmp_path / "web" / "slices.csv", dtype=str)
    assert len(slices) == 3
