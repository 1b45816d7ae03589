"""Data location rules and the PhysioNet download, against a tiny local mirror.

The mirror is laid out like https://physionet.org/files, built in tmp_path from
a handful of real records, and served by ``http.server`` on 127.0.0.1 (no
internet needed or used).
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ecg_ray.data import mitbih, physionet2017, store
from ecg_ray.data.download import (
    data_root, download, ensure_data, has_records, parse_checksums, source_dir,
)
from ecg_ray.data.errors import DataError
from ecg_ray.data.prepare import prepare

CLOSED_PORT_URL = "http://127.0.0.1:9"  # discard port: nothing listens there


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def quiet(*args, **kwargs):
    pass


@pytest.fixture(scope="module")
def cinc_records(cinc_labels) -> dict[str, str]:
    """Five real records covering every class, with their (v3) labels."""
    chosen = {}
    for label, n in (("N", 2), ("A", 1), ("O", 1), ("~", 1)):
        for r in [r for r, l in cinc_labels.items() if l == label][:n]:
            chosen[r] = label
    return dict(sorted(chosen.items()))


def write_sums(folder: Path, names: list[str]) -> None:
    (folder / "SHA256SUMS.txt").write_text("".join(f"{sha(folder / n)} {n}\n" for n in names))


@pytest.fixture
def mirror(tmp_path, cinc_dir, mitdb_dir, cinc_records) -> Path:
    """``<mirror>/challenge-2017/1.0.0/`` and ``<mirror>/mitdb/1.0.0/``, like PhysioNet."""
    site = tmp_path / "mirror"
    cinc = site / "challenge-2017" / "1.0.0"
    cinc.mkdir(parents=True)
    with zipfile.ZipFile(cinc / "training2017.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for name in cinc_records:
            for ext in (".hea", ".mat"):
                z.write(cinc_dir / f"{name}{ext}", f"training2017/{name}{ext}")
        # the zip's own labels are the original (v1) revision: pretend one differs
        v1 = {**cinc_records, next(iter(cinc_records)): "O"}
        z.writestr("training2017/REFERENCE.csv", "".join(f"{r},{l}\n" for r, l in v1.items()))
        z.writestr("training2017/RECORDS", "".join(f"{r}\n" for r in cinc_records))
    (cinc / "REFERENCE-v3.csv").write_text("".join(f"{r},{l}\n" for r, l in cinc_records.items()))
    write_sums(cinc, ["training2017.zip", "REFERENCE-v3.csv"])

    mit = site / "mitdb" / "1.0.0"
    mit.mkdir(parents=True)
    (mit / "RECORDS").write_text("100\n")
    for ext in (".hea", ".dat", ".atr"):
        shutil.copyfile(mitdb_dir / f"100{ext}", mit / f"100{ext}")
    write_sums(mit, ["RECORDS", "100.atr", "100.dat", "100.hea"])
    return site


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(mirror):
    """Serve ``mirror`` on 127.0.0.1 (a free port); yields the base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(mirror)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


# -- where the data lives ------------------------------------------------------------------------

def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("ECG_RAY_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root(tmp_path / "flag") == tmp_path / "flag"
    assert data_root(str(tmp_path / "flag")) == tmp_path / "flag"
    assert data_root(None) == tmp_path / "env"
    monkeypatch.delenv("ECG_RAY_DATA")
    assert data_root(None) == tmp_path / "xdg" / "ecg-ray" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root() == tmp_path / "home" / ".cache" / "ecg-ray" / "data"


def test_source_dir_layout(tmp_path, cinc_dir, mitdb_dir):
    assert source_dir(tmp_path, "cinc2017") == tmp_path / "cinc2017" / "training2017"
    assert source_dir(tmp_path, "mitbih") == tmp_path / "mitdb"
    # a folder that already holds records is the records folder itself
    assert source_dir(cinc_dir, "cinc2017") == cinc_dir
    assert source_dir(mitdb_dir, "mitbih") == mitdb_dir
    # the shared data root has the same layout as a download
    shared = cinc_dir.parents[1]
    assert source_dir(shared, "cinc2017") == cinc_dir
    assert source_dir(shared, "mitbih") == mitdb_dir
    with pytest.raises(DataError, match="unknown source"):
        source_dir(tmp_path, "ptbxl")


def test_ensure_data_uses_existing_copy_without_network(monkeypatch, cinc_dir):
    monkeypatch.setenv("ECG_RAY_MIRROR", CLOSED_PORT_URL)  # any download attempt would fail
    assert ensure_data(cinc_dir.parents[1], "cinc2017", log=quiet) == cinc_dir
    assert ensure_data(cinc_dir, "cinc2017", log=quiet) == cinc_dir


def test_parse_checksums():
    text = "ab12 training2017.zip\nCD34  REFERENCE-v3.csv\nef56 *RECORDS\n\n"
    assert parse_checksums(text) == {"training2017.zip": "ab12", "REFERENCE-v3.csv": "cd34", "RECORDS": "ef56"}


# -- download from the local mirror --------------------------------------------------------------

def test_download_then_prepare(server, tmp_path, cinc_records, mitdb_dir):
    root = tmp_path / "data"
    logs: list[str] = []
    assert download(root, base_url=server, log=logs.append) == root

    records = source_dir(root, "cinc2017")
    assert records == root / "cinc2017" / "training2017"
    assert physionet2017.list_records(records) == sorted(cinc_records)
    # v3 labels replace the zip's original ones
    assert physionet2017.read_labels(records / "REFERENCE.csv") == cinc_records
    assert not list(root.rglob("*.part")) and not list(root.rglob(".*.extract"))
    mit = source_dir(root, "mitbih")
    assert mit == root / "mitdb"
    for ext in (".hea", ".dat", ".atr"):
        assert sha(mit / f"100{ext}") == sha(mitdb_dir / f"100{ext}")
    assert any("MB/s" in line for line in logs)

    manifest = prepare("cinc2017", records, tmp_path / "prepared", workers=1, log=quiet)
    assert manifest["n_records"] == len(cinc_records)
    assert manifest["records"] == {c: list(cinc_records.values()).count(c) for c in ("N", "A", "O", "~")}
    assert set(store.load_segments(tmp_path / "prepared").column("record_id").to_pylist()) == set(cinc_records)
    windows, _ = mitbih.read_windows(mit, "100")
    assert len(windows) == 60 and {w.label for w in windows} == {"N"}


def test_download_skips_verified_files(server, tmp_path):
    root = tmp_path / "data"
    download(root, base_url=server, log=quiet)
    zip_path = root / "cinc2017" / "training2017.zip"
    mtimes = {p: p.stat().st_mtime_ns for p in (zip_path, root / "mitdb" / "100.dat")}
    sentinel = root / "cinc2017" / "training2017" / "sentinel"  # survives unless re-extracted
    sentinel.write_text("")
    logs: list[str] = []
    download(root, base_url=server, log=logs.append)
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert sentinel.exists()
    assert any("already here" in line for line in logs)


def test_download_replaces_a_damaged_local_file(server, tmp_path, mirror):
    root = tmp_path / "data"
    download(root, ("mitbih",), base_url=server, log=quiet)
    (root / "mitdb" / "100.dat").write_bytes(b"damaged")
    logs: list[str] = []
    download(root, ("mitbih",), base_url=server, log=logs.append)
    assert sha(root / "mitdb" / "100.dat") == sha(mirror / "mitdb" / "1.0.0" / "100.dat")
    assert not (root / "cinc2017").exists()  # only the source asked for


def test_ensure_data_downloads_when_missing(server, tmp_path, monkeypatch, cinc_records):
    monkeypatch.setenv("ECG_RAY_MIRROR", server)
    root = tmp_path / "data"
    records = ensure_data(root, "cinc2017", log=quiet)
    assert records == root / "cinc2017" / "training2017"
    assert has_records(records)
    assert not (root / "mitdb").exists()
    assert ensure_data(root, "mitbih", log=quiet) == root / "mitdb"


def test_checksum_mismatch_is_data_error(server, tmp_path, mirror):
    cinc = mirror / "challenge-2017" / "1.0.0"
    bad = "0" * 64
    good = sha(cinc / "training2017.zip")
    (cinc / "SHA256SUMS.txt").write_text(
        f"{bad} training2017.zip\n{sha(cinc / 'REFERENCE-v3.csv')} REFERENCE-v3.csv\n")
    root = tmp_path / "data"
    with pytest.raises(DataError) as e:
        download(root, ("cinc2017",), base_url=server, log=quiet)
    message = str(e.value)
    assert "training2017.zip" in message and bad in message and good in message
    assert not (root / "cinc2017" / "training2017.zip").exists()
    assert not list(root.rglob("*.part"))
    assert not has_records(root / "cinc2017" / "training2017")


def test_corrupt_mitdb_file_is_data_error(server, tmp_path, mirror):
    dat = mirror / "mitdb" / "1.0.0" / "100.dat"
    data = bytearray(dat.read_bytes())
    data[1000] ^= 0xFF  # one flipped byte; SHA256SUMS.txt still has the true hash
    dat.write_bytes(bytes(data))
    root = tmp_path / "data"
    with pytest.raises(DataError, match=r"100\.dat"):
        download(root, ("mitbih",), base_url=server, log=quiet)
    assert not (root / "mitdb" / "100.dat").exists()
    assert not list(root.rglob("*.part"))


def test_unreachable_server_is_offline_data_error(tmp_path):
    with pytest.raises(DataError) as e:
        download(tmp_path / "data", base_url=CLOSED_PORT_URL, log=quiet)
    message = str(e.value)
    assert "127.0.0.1:9" in message
    assert "offline" in message and "ECG_RAY_DATA" in message
    assert "\n" not in message


def test_ensure_data_offline_is_data_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ECG_RAY_MIRROR", CLOSED_PORT_URL)
    with pytest.raises(DataError, match="offline"):
        ensure_data(tmp_path / "empty", "mitbih", log=quiet)


def test_missing_file_on_server_is_data_error(server, tmp_path, mirror):
    (mirror / "mitdb" / "1.0.0" / "RECORDS").unlink()
    with pytest.raises(DataError, match="HTTP 404"):
        download(tmp_path / "data", ("mitbih",), base_url=server, log=quiet)


def test_file_not_in_checksums_is_data_error(server, tmp_path, mirror):
    mit = mirror / "mitdb" / "1.0.0"
    write_sums(mit, ["100.atr", "100.hea"])  # no 100.dat line
    with pytest.raises(DataError, match=r"100\.dat.*SHA256SUMS"):
        download(tmp_path / "data", ("mitbih",), base_url=server, log=quiet)


def test_unknown_source_is_data_error(tmp_path):
    with pytest.raises(DataError, match="unknown source"):
        download(tmp_path, ("ptbxl",), base_url=CLOSED_PORT_URL, log=quiet)
