"""Where the raw data lives, and fetching it from PhysioNet (urllib only).

``data_root`` decides the folder (flag, else ``$ECG_RAY_DATA``, else a user cache folder);
``source_dir`` finds a source's records inside it; ``download`` fetches what is missing, verified
against PhysioNet's own ``SHA256SUMS.txt``; ``ensure_data`` is "the records folder, downloading it first if needed".

Layout of a data root (the same as ``../shared/data``)::

    cinc2017/training2017/   A?????.mat + .hea, REFERENCE.csv (the v3 labels)
    mitdb/                   100.hea/.dat/.atr, ...

Every file is streamed to ``<name>.part`` and renamed only once its checksum matches, so an
interrupted download never leaves a file that looks complete; files already present with the
right checksum are not fetched again.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable

from .errors import DataError
from .sources import NAMES as SOURCES, get_source

DEFAULT_MIRROR = "https://physionet.org/files"
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
    chosen = flag or os.environ.get("ECG_RAY_DATA")
    return Path(chosen).expanduser() if chosen else user_cache() / "data"


def user_cache() -> Path:
    """ecg-ray's folder in the user cache: ``$XDG_CACHE_HOME/ecg-ray`` or ``~/.cache/ecg-ray``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "ecg-ray"


def has_records(folder: Path) -> bool:
    """True when ``folder`` holds at least one record header (``.hea``)."""
    return Path(folder).is_dir() and any(Path(folder).glob("*.hea"))


def source_dir(root: str | Path, source: str) -> Path:
    """The records folder of ``source`` under ``root`` — or ``root`` itself when it
    already holds records (the user pointed straight at a records folder)."""
    return Path(root) if has_records(root) else Path(root).joinpath(*get_source(source).folder)


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
    like ``https://physionet.org/files``) into ``root``; returns ``root``. ``DataError``
    when a server cannot be reached, a file is missing from it, or a checksum does not match."""
    root = Path(root)
    base_url = (base_url or os.environ.get("ECG_RAY_MIRROR") or DEFAULT_MIRROR).rstrip("/")
    chosen = [get_source(s) for s in sources]
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the data folder {root} ({e.strerror or e})") from None
    for source in chosen:
        project_url = f"{base_url}/{source.project}"
        sums = parse_checksums(_get(f"{project_url}/SHA256SUMS.txt"))  # first: offline leaves nothing behind
        if not sums:
            raise DataError(f"no checksums in {project_url}/SHA256SUMS.txt")
        folder = root / source.folder[0]
        folder.mkdir(parents=True, exist_ok=True)
        log(f"{source.title} → {folder}")
        source.download(folder, project_url, sums, log)
    return root


def download_cinc(folder: Path, project_url: str, sums: dict[str, str], log) -> None:
    """The challenge's zip and the latest labels into ``folder``, unzipped to ``folder/training2017``."""
    fetched = _fetch(project_url, CINC_ZIP, folder, sums, log)
    _fetch(project_url, CINC_LABELS, folder, sums, log)
    records = folder / "training2017"
    if fetched is not None or not has_records(records):
        _unzip(folder / CINC_ZIP, records, log)
    # The zip carries the original (v1) labels; the v3 revision replaces them.
    shutil.copyfile(folder / CINC_LABELS, records / "REFERENCE.csv")
    log(f"  {len(list(records.glob('*.hea')))} records and labels ({CINC_LABELS} as REFERENCE.csv) in {records}")


def download_mitdb(folder: Path, project_url: str, sums: dict[str, str], log) -> None:
    """Every record of the project's ``RECORDS`` list (header, signal, annotations) into ``folder``."""
    names = _get(f"{project_url}/RECORDS").split()
    if not names:
        raise DataError(f"{project_url}/RECORDS lists no records")
    (folder / "RECORDS").write_text("".join(f"{n}\n" for n in names))
    total, start = 0, time.perf_counter()
    for i, name in enumerate(names, start=1):
        got = [_fetch(project_url, f"{name}{ext}", folder, sums, log, quiet=True) for ext in MITDB_EXTS]
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
    log(f"  unzipping {archive.name}")
    with tempfile.TemporaryDirectory(prefix=f".{archive.stem}.extract", dir=archive.parent,
                                     ignore_cleanup_errors=True) as tmp:
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"cannot unzip {archive}: {e}") from None
        inner = Path(tmp) / records.name
        shutil.rmtree(records, ignore_errors=True)
        (inner if inner.is_dir() else Path(tmp)).rename(records)


def parse_checksums(text: str) -> dict[str, str]:
    """``path -> sha256`` from ``SHA256SUMS.txt`` lines ``<sha256> <path>``
    (one or two spaces, optional ``*`` binary marker)."""
    pairs = (line.split(maxsplit=1) for line in text.splitlines())
    return {p[1].lstrip("*").strip(): p[0].lower() for p in pairs if len(p) == 2}


def _offline(url: str, reason) -> DataError:
    return DataError(f"could not reach {url} ({reason}): this machine seems to be offline; "
                     "set ECG_RAY_DATA to an existing copy of the data (or pass --data-dir)")


def _open(url: str):
    try:
        return urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        raise DataError(f"could not download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
        raise _offline(url, getattr(e, "reason", e)) from None
    except ValueError as e:  # not a URL urllib understands
        raise DataError(f"bad download URL {url!r}: {e} (check ECG_RAY_MIRROR)") from None


def _read(response, url: str, size: int = -1) -> bytes:
    try:
        return response.read(size)
    except (OSError, http.client.HTTPException) as e:
        raise _offline(url, e) from None


def _get(url: str) -> str:
    """A small text file, whole."""
    with _open(url) as response:
        return _read(response, url).decode("utf-8", "replace")


def _fetch(project_url: str, name: str, folder: Path, sums: dict[str, str], log, quiet: bool = False) -> int | None:
    """Stream ``<project_url>/<name>`` to ``folder / name`` (via ``<name>.part``), its sha256
    checked against ``sums`` (``SHA256SUMS.txt``): the bytes downloaded, or None when the file
    was already there with the right checksum. ``quiet`` leaves the progress lines to the caller."""
    if name not in sums:
        raise DataError(f"{name} is not listed in {project_url}/SHA256SUMS.txt: cannot verify it")
    url, dest, expected = f"{project_url}/{name}", folder / name, sums[name]
    if dest.is_file():
        with open(dest, "rb") as f:
            present = hashlib.file_digest(f, "sha256").hexdigest()
        if present == expected:
            if not quiet:
                log(f"  {dest.name}: already here, checksum OK")
            return None
        log(f"  {dest.name}: present but its checksum differs; downloading it again")
    part = dest.with_name(dest.name + ".part")
    h, done, start, last = hashlib.sha256(), 0, time.perf_counter(), time.perf_counter()
    try:
        with _open(url) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            while block := _read(response, url, CHUNK):
                out.write(block)
                h.update(block)
                done += len(block)
                now = time.perf_counter()
                if not quiet and now - last >= PROGRESS_EVERY_S:
                    last = now
                    of = f"/{total / 1e6:.1f}" if total else ""
                    log(f"  {dest.name}: {done / 1e6:.1f}{of} MB, {done / 1e6 / (now - start):.1f} MB/s")
    except BaseException as e:
        part.unlink(missing_ok=True)
        if isinstance(e, OSError):  # network errors are DataErrors by now: this is the local file
            raise DataError(f"cannot write {part} ({e.strerror or e})") from None
        raise
    actual = h.hexdigest()
    if actual != expected:
        part.unlink(missing_ok=True)
        dest.unlink(missing_ok=True)
        raise DataError(f"checksum mismatch for {dest.name} from {url}: expected sha256 {expected}, got {actual} "
                        "(the file was removed; run the download again)")
    part.replace(dest)
    if not quiet:
        seconds = max(time.perf_counter() - start, 1e-6)
        log(f"  {dest.name}: {done / 1e6:.1f} MB in {seconds:.1f} s ({done / 1e6 / seconds:.1f} MB/s), checksum OK")
    return done
