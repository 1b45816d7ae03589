"""The source registry: every database ecg-ray reads, behind one interface.

A ``Source`` says where its records sit under a data root (``folder``), lists them, reads
their labels (``labels``: the label file, or None when labels come with the records), reads
one record into labelled items (``read``: one item per CinC record, one per 30-s window of a
MIT-BIH record), says which items must stay together in a split (``group_of``: a MIT-BIH
window's patient record) and fetches itself (``download``). ``prepare``, ``evaluate``,
``download``, the CLI and the cross-validation folds ask the registry; adding a database is
one new class here (and its reader module, imported when first used). Plain numpy / wfdb, no Ray.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .. import CLASSES
from .errors import DataError, RecordError


def check_label(name: str, labels: dict[str, str]) -> str:
    """``labels[name]``; ``RecordError`` when the record has no label or one outside ``CLASSES``."""
    if name not in labels:
        raise RecordError(name, "no label", "record missing from the label file")
    if labels[name] not in CLASSES:
        raise RecordError(name, "unknown label", f"{labels[name]!r} is not one of {', '.join(CLASSES)}")
    return labels[name]


class Source:
    name: str = ""
    reader_module: str = ""  # module of this package that reads the records
    title: str = ""
    project: str = ""  # PhysioNet project, "<name>/<version>" under https://physionet.org/files
    folder: tuple[str, ...] = ()  # records folder under a data root
    grouped: bool = False  # items are windows of a record (patient) that must stay in one split
    chunk: int = 200  # records per prepare task
    long_mat: bool = False  # records are MATLAB v4 rows that prepare can read in pieces (days-long records)

    @property
    def reader(self):
        # imported when first used: listing the sources (the CLI) does not load wfdb
        return importlib.import_module(f"{__package__}.{self.reader_module}")

    def list_records(self, data_dir: Path) -> list[str]:
        return self.reader.list_records(data_dir)

    def labels(self, data_dir: Path, labels_path: Path | None = None) -> tuple[Path | None, dict[str, str] | None]:
        """``(label file, {record: label})``, or ``(None, None)`` when labels come with the records."""
        return None, None

    def read(self, data_dir: Path, name: str, labels: dict | None = None,
             window_s: float = 30.0) -> tuple[list[tuple[str, str, object, float]], dict[str, int]]:
        """``([(item id, label, signal (mV), fs)], {skip reason: count})`` of one record;
        ``RecordError`` if the record (or its label) cannot be used."""
        raise NotImplementedError

    def group_of(self, item_id: str) -> str:
        """The record an item comes from (the item itself for one-item records)."""
        return item_id

    def download(self, folder: Path, project_url: str, sums: dict[str, str], log) -> None:
        """Fetch the records into ``folder`` (``download.download`` has made it and read ``sums``)."""
        raise NotImplementedError


class Cinc2017(Source):
    """PhysioNet/CinC Challenge 2017: ``A?????.mat`` + ``.hea``, labels in ``REFERENCE.csv``."""

    name, title, reader_module, project = "cinc2017", "PhysioNet/CinC 2017", "physionet2017", "challenge-2017/1.0.0"
    folder, long_mat = ("cinc2017", "training2017"), True

    def labels(self, data_dir, labels_path=None):
        file = self.reader.find_label_file(data_dir, labels_path)
        return file, self.reader.read_labels(file)

    def read(self, data_dir, name, labels=None, window_s=30.0):
        label = check_label(name, labels) if labels is not None else None
        signal, fs = self.reader.read_record(data_dir, name)
        return [(name, label, signal, fs)], {}

    def download(self, folder, project_url, sums, log):
        from .download import download_cinc

        download_cinc(folder, project_url, sums, log)


class MitBih(Source):
    """MIT-BIH Arrhythmia Database (wfdb): 30-s windows of lead MLII labelled from the rhythm annotations."""

    name, title, reader_module, project = "mitbih", "MIT-BIH Arrhythmia Database", "mitbih", "mitdb/1.0.0"
    folder, grouped, chunk = ("mitdb",), True, 1

    def read(self, data_dir, name, labels=None, window_s=30.0):
        return self.reader.read_windows(data_dir, name, window_s)  # its windows are (id, label, signal, fs)

    def group_of(self, item_id):
        return item_id.rsplit("_w", 1)[0]

    def download(self, folder, project_url, sums, log):
        from .download import download_mitdb

        download_mitdb(folder, project_url, sums, log)


SOURCES: dict[str, Source] = {s.name: s for s in (Cinc2017(), MitBih())}
#: The source a prepared folder or a command means when it names none (manifests before the registry).
DEFAULT_SOURCE = "cinc2017"
NAMES: tuple[str, ...] = tuple(SOURCES)


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise DataError(f"unknown source {name!r}: expected one of {', '.join(SOURCES)}")
    return SOURCES[name]
