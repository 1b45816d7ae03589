"""Where the raw data lives, and fetching it from PhysioNet (urllib only).

``data_root`` decides the folder (flag, else ``$ECG_RAY_DATA``, else a user
cache folder); ``source_dir`` finds a source's records inside it; ``download``
fetches what is missing, verified against PhysioNet's own ``SHA256SUMS.txt``;
``ensure_data`` is "the records folder, downloading it first if needed".

Layout of a data root (the same as ``../shared/data``)::

    cinc2017/training2017/   A?????.mat + .hea, REFERENCE.csv (the v3 labels)
    mitdb/                   100.hea/.dat/.atr, ...

Every file is streamed to ``<name>.part`` and renamed only once its checksum
matches, so an interrupted download never leaves a file that looks complete.
Files already present with the right checksum are not fetched again.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable

from .errors import DataError
from .sources import NAMES as SOURCES
from .sources import get_source

DEFAULT_MIRROR = "https://physionet.org/files"
CINC_PROJECT = "challenge-2017/1.0.0"
MITDB_PROJECT = "mitdb/1.0.0"
CINC_ZIP = "training2017.zip"
CINC_LABELS = "REFERENCE-v3.csv"  # the latest label revision; saved as training2017/REFERENCE.csv
MITDB_EXTS = (".hea", ".dat", ".atr")
CHUNK = 1 << 20
TIMEOUT_S = 30
PROGRESS_EVERY_S = 5.0


# -- where the data lives ------------------------------------------------------------------------

def data_root(flag: str | Path | None = None) -> Path:
    """The data root: ``flag``, else ``$ECG_RAY_DATA``, else the user cache
    (``$XDG_CACHE_HOME/ecg-ray/data`` or ``~/.cache/ecg-ray/data``)."""
    if flag:
        return Path(flag).expanduser()
    if os.environ.get("ECG_RAY_DATA"):
        return Path(os.environ["ECG_RAY_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "ecg-ray" / "data"


def has_records(folder: Path) -> bool:
    """True when ``folder`` holds at least one record header (``.hea``)."""
    folder = Path(folder)
    return folder.is_dir() and next(folder.glob("*.hea"), None) is not None


def source_dir(root: str | Path, source: str) -> Path:
    """The records folder of ``source`` under ``root`` — or ``root`` itself when it
    already holds records (the user pointed straight at a records folder)."""
    folder = get_source(source).folder
    root = Path(root)
    return root if has_records(root) else root.joinpath(*folder)


def ensure_data(root: str | Path, source: str, log: Callable[[str], None] = print) -> Path:
    """``source_dir(root, source)``, downloading the source into ``root`` first
    when that folder holds no records."""
    folder = source_dir(root, source)
    if has_records(folder):
        return folder
    log(f"no {source} records in {folder}: downloading them into {Path(root)}")
    download(root, (source,), log=log)
    return source_dir(root, source)


# -- download ------------------------------------------------------------------------------------

def download(
    root: str | Path, sources: tuple[str, ...] | list[str] = SOURCES, base_url: str | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Fetch ``sources`` from PhysioNet (or ``base_url``/``$ECG_RAY_MIRROR``, laid out
    like ``https://physionet.org/files``) into ``root``; returns ``root``.

    Raises ``DataError`` when a server cannot be reached, a file is missing from
    it, or a checksum does not match.
    """
    root = Path(root)
    base_url = (base_url or os.environ.get("ECG_RAY_MIRROR") or DEFAULT_MIRROR).rstrip("/")
    chosen = [get_source(s) for s in sources]
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the data folder {root} ({e.strerror or e})") from None
    for source in chosen:
        source.download(root, base_url, log)
    return root


def download_cinc(root: Path, project_url: str, log) -> None:
    sums = _checksums(project_url)  # first: offline leaves nothing behind
    folder = root / "cinc2017"
    folder.mkdir(parents=True, exist_ok=True)
    log(f"PhysioNet/CinC 2017 → {folder}")
    fetched = _fetch(f"{project_url}/{CINC_ZIP}", folder / CINC_ZIP, _expected(sums, CINC_ZIP, project_url), log)
    _fetch(f"{project_url}/{CINC_LABELS}", folder / CINC_LABELS, _expected(sums, CINC_LABELS, project_url), log)
    records = folder / "training2017"
    if fetched is not None or not has_records(records):
        _unzip(folder / CINC_ZIP, records, log)
    # The zip carries the original (v1) labels; the v3 revision replaces them.
    shutil.copyfile(folder / CINC_LABELS, records / "REFERENCE.csv")
    n = sum(1 for _ in records.glob("*.hea"))
    log(f"  {n} records and labels ({CINC_LABELS} as REFERENCE.csv) in {records}")


def download_mitdb(root: Path, project_url: str, log) -> None:
    sums = _checksums(project_url)  # first: offline leaves nothing behind
    folder = root / "mitdb"
    folder.mkdir(parents=True, exist_ok=True)
    log(f"MIT-BIH Arrhythmia Database → {folder}")
    records_text = _get(f"{project_url}/RECORDS").decode("utf-8", "replace")
    names = [line.strip() for line in records_text.splitlines() if line.strip()]
    if not names:
        raise DataError(f"{project_url}/RECORDS lists no records")
    (folder / "RECORDS").write_text("".join(f"{n}\n" for n in names))
    total, start = 0, time.perf_counter()
    for i, name in enumerate(names, start=1):
        got = []
        for ext in MITDB_EXTS:
            file = f"{name}{ext}"
            got.append(_fetch(f"{project_url}/{file}", folder / file, _expected(sums, file, project_url), log,
                              quiet=True))
        if all(g is None for g in got):
            log(f"  record {name} ({i}/{len(names)}): already here, checksums OK")
            continue
        total += sum(g or 0 for g in got)
        rate = total / 1e6 / max(time.perf_counter() - start, 1e-6)
        log(f"  record {name} ({i}/{len(names)}): {total / 1e6:.1f} MB so far, {rate:.1f} MB/s, checksums OK")
    log(f"  {len(names)} records in {folder}")


def _unzip(archive: Path, records: Path, log) -> None:
    """Extract ``archive`` beside itself and move its records folder to ``records``
    in one step, so a half-extracted folder never looks like the data."""
    tmp = archive.parent / f".{archive.stem}.extract"
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"  unzipping {archive.name}")
    try:
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
    except (zipfile.BadZipFile, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"cannot unzip {archive}: {e}") from None
    inner = tmp / records.name if (tmp / records.name).is_dir() else tmp
    shutil.rmtree(records, ignore_errors=True)
    inner.rename(records)
    shutil.rmtree(tmp, ignore_errors=True)


def parse_checksums(text: str) -> dict[str, str]:
    """``path -> sha256`` from ``SHA256SUMS.txt`` lines ``<sha256> <path>``
    (one or two spaces, optional ``*`` binary marker)."""
    sums = {}
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2:
            sums[parts[1].lstrip("*").strip()] = parts[0].lower()
    return sums


def _checksums(project_url: str) -> dict[str, str]:
    url = f"{project_url}/SHA256SUMS.txt"
    sums = parse_checksums(_get(url).decode("utf-8", "replace"))
    if not sums:
        raise DataError(f"no checksums in {url}")
    return sums


def _expected(sums: dict[str, str], name: str, project_url: str) -> str:
    if name not in sums:
        raise DataError(f"{name} is not listed in {project_url}/SHA256SUMS.txt: cannot verify it")
    return sums[name]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _offline(url: str, reason) -> DataError:
    return DataError(
        f"could not reach {url} ({reason}): this machine seems to be offline; "
        "set ECG_RAY_DATA to an existing copy of the data (or pass --data-dir)"
    )


def _open(url: str):
    try:
        return urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        raise DataError(f"could not download {url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _offline(url, e.reason) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
        raise _offline(url, e) from None
    except ValueError as e:  # not a URL urllib understands
        raise DataError(f"bad download URL {url!r}: {e} (check ECG_RAY_MIRROR)") from None


def _get(url: str) -> bytes:
    """A small file, whole, in memory."""
    with _open(url) as response:
        try:
            return response.read()
        except (OSError, http.client.HTTPException) as e:
            raise _offline(url, e) from None


def _fetch(url: str, dest: Path, expected: str, log, quiet: bool = False) -> int | None:
    """Stream ``url`` to ``dest`` (via ``dest.part``) and check its sha256.

    Returns the bytes downloaded, or None when ``dest`` was already there with
    the right checksum. ``quiet`` leaves the progress lines to the caller.
    """
    if dest.is_file():
        if sha256(dest) == expected:
            if not quiet:
                log(f"  {dest.name}: already here, checksum OK")
            return None
        log(f"  {dest.name}: present but its checksum differs; downloading it again")
    part = dest.with_name(dest.name + ".part")
    h, done, start, last = hashlib.sha256(), 0, time.perf_counter(), time.perf_counter()
    try:
        with _open(url) as response, _create(part) as out:
            total = int(response.headers.get("Content-Length") or 0)
            while True:
                try:
                    block = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise _offline(url, e) from None
                if not block:
                    break
                try:
                    out.write(block)
                except OSError as e:
                    raise DataError(f"cannot write {part} ({e.strerror or e})") from None
                h.update(block)
                done += len(block)
                now = time.perf_counter()
                if not quiet and now - last >= PROGRESS_EVERY_S:
                    last = now
                    of = f"/{total / 1e6:.1f}" if total else ""
                    log(f"  {dest.name}: {done / 1e6:.1f}{of} MB, {done / 1e6 / (now - start):.1f} MB/s")
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    actual = h.hexdigest()
    if actual != expected:
        part.unlink(missing_ok=True)
        dest.unlink(missing_ok=True)
        raise DataError(
            f"checksum mismatch for {dest.name} from {url}: expected sha256 {expected}, got {actual} "
            "(the file was removed; run the download again)"
        )
    part.replace(dest)
    if not quiet:
        seconds = max(time.perf_counter() - start, 1e-6)
        log(f"  {dest.name}: {done / 1e6:.1f} MB in {seconds:.1f} s ({done / 1e6 / seconds:.1f} MB/s), checksum OK")
    return done


def _create(path: Path):
    try:
        return open(path, "wb")
    except OSError as e:
        raise DataError(f"cannot write {path} ({e.strerror or e})") from None
