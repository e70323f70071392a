"""A real local S3 server for the object storage tests (``moto_server`` on 127.0.0.1), a
proxy in front of it that fails or stalls a seeded fraction of requests, and tests of
the storage layer's requests against them: listing, ranged header reads, retries,
uploads."""

from __future__ import annotations

import atexit
import http.client
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto")

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """``moto_server`` on a free port of 127.0.0.1, stopped by :meth:`stop`."""

    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        executable = shutil.which("moto_server", path=str(Path(sys.executable).parent))
        command = [executable] if executable else [sys.executable, "-m", "moto.server"]
        self.process = subprocess.Popen(
            [*command, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto_server did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def s3_environment(endpoint: str) -> dict[str, str]:
    """The environment that points botocore and s3fs at ``endpoint``."""
    return {**DUMMY_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}


_server: MotoServer | None = None


@pytest.fixture(scope="session")
def moto_server():
    """The one local S3 server of the test session (every module that uses the fixture
    shares it: clients cache their endpoint), stopped when the session's process ends."""
    global _server
    if _server is None:
        _server = MotoServer()
        atexit.register(_server.stop)
        os.environ.update(s3_environment(_server.endpoint))
    return _server


_bucket_numbers = iter(range(10**6))


@pytest.fixture
def bucket(moto_server):
    """A new empty bucket's name on the local server."""
    import s3fs

    name = f"test-{os.getpid()}-{next(_bucket_numbers)}"
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": moto_server.endpoint})
    fs.mkdir(name)
    return name


def s3(endpoint: str):
    import s3fs

    return s3fs.S3FileSystem(
        client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True, use_listings_cache=False
    )


def upload_tree(folder: Path, endpoint: str, url: str) -> list[str]:
    """Every file under ``folder`` put under ``url``; their keys relative to ``folder``."""
    fs = s3(endpoint)
    keys = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = path.relative_to(folder).as_posix()
        fs.put_file(str(path), f"{url.rstrip('/')}/{key}")
        keys.append(key)
    return keys


class FlakyProxy:
    """An HTTP proxy on 127.0.0.1 in front of ``upstream`` that answers a seeded fraction
    of requests with 500 or 503 (SlowDown) or stalls them past the client's timeout,
    never more than ``max_in_a_row`` of one request in a row (so bounded retries win)."""

    def __init__(
        self, upstream: str, fraction: float, seed: int, stall_seconds=3.0, latency_seconds=0.0
    ):
        self.upstream = upstream.removeprefix("http://")
        self.latency_seconds = latency_seconds  # added to every request (a distant server)
        self.refused: set[str] = set()  # request paths answered 403 AccessDenied
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.fraction, self.stall_seconds = fraction, stall_seconds
        self.faults = {"500": 0, "503": 0, "stall": 0}
        self.requests = 0
        self.max_in_a_row, self._in_a_row = 2, 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                fault = proxy.draw()
                time.sleep(proxy.latency_seconds)
                if self.path.split("?")[0] in proxy.refused:
                    fault = "403"
                if fault == "stall":
                    time.sleep(proxy.stall_seconds)
                    self.close_connection = True
                    return
                if fault in ("500", "503", "403"):
                    code = {"500": "InternalError", "503": "SlowDown", "403": "AccessDenied"}[fault]
                    payload = f"<Error><Code>{code}</Code><Message>injected</Message></Error>"
                    data = payload.encode()
                    self.send_response(int(fault))
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = proxy.upstream
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                length = answer.getheader("Content-Length") if self.command == "HEAD" else None
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def draw(self) -> str | None:
        with self.lock:
            self.requests += 1
            if self._in_a_row < self.max_in_a_row and self.rng.random() < self.fraction:
                self._in_a_row += 1
                fault = self.rng.choice(["500", "503", "stall"])
                self.faults[fault] += 1
                return fault
            self._in_a_row = 0
            return None

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- the storage layer against the server ---------------------------------------------------


def test_urls_are_told_from_local_paths():
    from dicomprep.storage import is_url

    assert is_url("s3://bucket/prefix") and is_url("gs://b/x") and is_url("az://c/d")
    assert is_url("https://example.org/a.dcm") and is_url("memory://x")
    assert not is_url("/data/dicom") and not is_url("relative/path") and not is_url("C:\\x")
    assert not is_url("file:///data/dicom") and not is_url(Path("s3://b/k"))


def test_listing_pages_through_more_than_a_thousand_objects(moto_server, bucket):
    from dicomprep.storage.objects import list_objects

    fs = s3(moto_server.endpoint)
    names = [f"p/{k // 100:02d}/{k:05d}.dcm" for k in range(1105)]
    fs.pipe({f"{bucket}/{name}": str(k).encode() for k, name in enumerate(names)})
    fs.pipe({f"{bucket}/p/.hidden": b"x", f"{bucket}/other/x.dcm": b"y"})
    objects = list_objects(f"s3://{bucket}/p", {})
    assert [o.url for o in objects] == sorted(f"s3://{bucket}/{n}" for n in names)
    infos = {f"s3://{i['name']}": i for i in fs.find(f"{bucket}/p", detail=True).values()}
    first = objects[0]
    assert first.size == len(b"0") and first.etag == infos[first.url]["ETag"].strip('"')
    stamp = infos[first.url]["LastModified"].timestamp()
    assert abs(first.mtime_ns / 1e9 - stamp) < 1e-3


def _dataset_with_long_header(path: Path, extra_bytes: int) -> Path:
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    ds = dcmread(get_testdata_file("CT_small.dcm"))
    block = ds.private_block(0x0011, "dicomprep test", create=True)
    block.add_new(0x01, "OB", bytes(extra_bytes))
    ds.save_as(path)
    return path


@pytest.mark.parametrize("extra", [0, 200_000])
def test_headers_are_read_with_ranges_as_long_as_the_header_needs(
    moto_server, bucket, tmp_path, extra
):
    from pydicom import dcmread

    from dicomprep.storage.headers import FIRST_RANGE, read_object_header
    from dicomprep.storage.objects import object_facts

    local = _dataset_with_long_header(tmp_path / "ct.dcm", extra)
    s3(moto_server.endpoint).put_file(str(local), f"{bucket}/ct.dcm")
    facts = object_facts(f"s3://{bucket}/ct.dcm", {})
    ranges: list[int] = []
    ds, has_pixels = read_object_header(facts, {}, ranges=ranges)
    expected = dcmread(local, stop_before_pixels=True)
    assert has_pixels
    assert ds.SOPInstanceUID == expected.SOPInstanceUID and ds.Rows == expected.Rows
    size = local.stat().st_size
    if extra == 0:  # the whole header in the first range, pixels not read
        assert ranges == [min(FIRST_RANGE, size)]
    else:  # one longer range, not the whole file bit by bit
        assert len(ranges) == 2 and ranges[0] == FIRST_RANGE and ranges[1] > extra


def test_not_dicom_objects_are_read_once(moto_server, bucket):
    from dicomprep.formats.decode import NotDicomError
    from dicomprep.storage.headers import read_object_header
    from dicomprep.storage.objects import object_facts

    s3(moto_server.endpoint).pipe({f"{bucket}/junk.bin": os.urandom(300_000)})
    ranges: list[int] = []
    with pytest.raises(NotDicomError):
        read_object_header(object_facts(f"s3://{bucket}/junk.bin", {}), {}, ranges=ranges)
    assert len(ranges) == 1


def test_absent_and_refused_objects_are_permanent_errors(moto_server, bucket):
    from dicomprep.storage.objects import object_facts, read_range
    from dicomprep.storage.retry import is_transient

    with pytest.raises(FileNotFoundError) as missing:
        read_range(f"s3://{bucket}/nothing-here.dcm", 0, 10, {})
    assert not is_transient(missing.value)
    with pytest.raises(FileNotFoundError):
        object_facts(f"s3://{bucket}-no-such-bucket/x.dcm", {})


def test_retry_classification_of_answers():
    from botocore.exceptions import ClientError, ReadTimeoutError

    from dicomprep.storage.retry import is_transient

    def answer(status, code):
        response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return ClientError(response, "GetObject")

    assert is_transient(answer(503, "SlowDown")) and is_transient(answer(500, "InternalError"))
    assert not is_transient(answer(403, "AccessDenied"))
    assert not is_transient(answer(404, "NoSuchKey"))
    assert is_transient(ReadTimeoutError(endpoint_url="http://127.0.0.1:1"))
    assert is_transient(ConnectionResetError()) and not is_transient(PermissionError())


def test_backoff_pauses_grow_and_are_jittered():
    from dicomprep.storage.retry import RetryPolicy, with_retries

    pauses, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise TimeoutError("stalled")
        return "done"

    policy = RetryPolicy(attempts=5, base_seconds=1.0, cap_seconds=100)
    assert with_retries(flaky, policy, rng=random.Random(3), sleep=pauses.append) == "done"
    assert len(calls) == 4 and len(pauses) == 3
    assert all(0 <= p < 2**n for n, p in enumerate(pauses, start=1))
    assert len(set(pauses)) == 3
    calls.clear()
    with pytest.raises(TimeoutError):
        with_retries(flaky, RetryPolicy(attempts=2), sleep=lambda s: None)
    assert len(calls) == 2
    calls.clear()

    def refused():
        calls.append(1)
        raise PermissionError("403")

    with pytest.raises(PermissionError):
        with_retries(refused, policy, sleep=lambda s: None)
    assert len(calls) == 1


# The client gives up on its own quickly (one attempt, a short read timeout), so that
# the failures reach the storage layer's retries.


@pytest.fixture
def proxied(moto_server):
    """A proxy without faults that counts requests; the storage options point at it."""
    from dicomprep.storage.objects import configure, configured_options

    proxy = FlakyProxy(moto_server.endpoint, fraction=0.0, seed=0)
    saved = configured_options()
    configure({"client_kwargs": {"endpoint_url": proxy.endpoint}})
    yield proxy
    configure(saved)
    proxy.stop()


def flaky_options(endpoint: str) -> dict:
    return {
        "client_kwargs": {"endpoint_url": endpoint},
        "config_kwargs": {
            "read_timeout": 1,
            "connect_timeout": 1,
            "retries": {"max_attempts": 1, "mode": "standard"},
        },
    }


def test_requests_through_a_failing_server_are_retried(moto_server, bucket, tmp_path):
    from dicomprep.storage.objects import fetch_to_file, list_objects, put_file, read_range

    proxy = FlakyProxy(moto_server.endpoint, fraction=0.3, seed=11, stall_seconds=2.5)
    try:
        options = flaky_options(proxy.endpoint)
        payloads = {f"k/{n}.bin": os.urandom(1000 + n) for n in range(12)}
        source = tmp_path / "up"
        for name, data in payloads.items():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes(data)
            put_file(source / name, f"s3://{bucket}/{name}", options)
        listed = list_objects(f"s3://{bucket}/k", options)
        assert {o.url: o.size for o in listed} == {
            f"s3://{bucket}/{name}": len(data) for name, data in payloads.items()
        }
        for name, data in payloads.items():
            assert read_range(f"s3://{bucket}/{name}", 10, 50, options) == data[10:50]
            fetched = fetch_to_file(f"s3://{bucket}/{name}", tmp_path / "down.bin", options)
            assert fetched.read_bytes() == data
        assert sum(proxy.faults.values()) >= 5, proxy.faults
        assert min(proxy.faults.values()) >= 1, proxy.faults
    finally:
        proxy.stop()
