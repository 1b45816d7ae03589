"""What the stages write and read back, in one place: ``json_safe`` (the one JSON
converter), ``log_stderr`` and ``verbose`` (console), ``provenance`` (recorded in
every results file, summary and checkpoint) and ``Run``, the run folder whose
files are named and opened here only.

The prepared dataset's handle is ``data.dataset.PreparedDataset``; an
experiment's is ``tuning.experiment.load_experiment``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np


def log_stderr(msg: str) -> None:
    """Print one progress line to stderr and flush it (sys.stderr looked up per call: tests may swap it)."""
    print(msg, file=sys.stderr, flush=True)


def verbose() -> bool:
    """``$ECG_RAY_VERBOSE``: Ray's own console output (INFO lines, worker logs, Tune's tables) on."""
    return bool(os.environ.get("ECG_RAY_VERBOSE"))


PACKAGES = ("ecg-ray", "torch", "ray", "numpy", "scipy", "scikit-learn", "pandas", "pyarrow")


def json_safe(value, strict: bool = True):
    """numpy scalars/arrays → Python, tuples → lists, dict keys and other objects (paths) → str, pandas' NA →
    None, recursively; non-finite floats → None when ``strict`` (strict JSON), kept otherwise (checkpoint metrics)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v, strict) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v, strict) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and strict and not math.isfinite(value):
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:
    """This checkout's commit, ``+dirty`` when tracked files changed; None outside git."""
    git = functools.partial(subprocess.run, cwd=Path(__file__).resolve().parent, text=True, capture_output=True,
                            timeout=10)
    try:
        head, dirty = git(["git", "rev-parse", "HEAD"]), git(["git", "status", "--porcelain", "--untracked-files=no"])
    except (OSError, subprocess.SubprocessError):
        return None
    return None if head.returncode else head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str | None]:
    versions = dict.fromkeys(PACKAGES)
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def provenance(config_hash: str | None = None, command: str | None = None) -> dict:
    """``{git_commit, packages, config_hash, command}``: where a result came from.
    ``command`` defaults to this process's ``ecg-ray`` command line (None inside a
    Ray worker, e.g. a sweep trial: the sweep records its own in ``ecg_ray_sweep.json``)."""
    if command is None and Path(sys.argv[0]).name in ("ecg-ray", "cli.py"):
        command = shlex.join(["ecg-ray", *sys.argv[1:]])
    return {"git_commit": _git_commit(), "packages": package_versions(), "config_hash": config_hash, "command": command}


def read_json(path) -> dict | None:
    """A JSON file's content, or None if it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_json(path, data, **kwargs) -> Path:
    path = Path(path)
    path.write_text(json.dumps(data, indent=1, **kwargs))
    return path


class Run:
    """A run folder (``ecg-ray train --out``, a cross-validation fold, a final model): ``model.pt`` (the kept
    epoch), ``results.json`` (config, data, metrics, timing, provenance), ``history.json`` (one entry per
    epoch) and, for a final model, ``final.json``."""

    CHECKPOINT = "model.pt"
    RESULTS = "results.json"
    HISTORY = "history.json"
    FINAL = "final.json"

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @classmethod
    def holds(cls, path) -> bool:
        """True when ``path`` is a run folder (it holds ``results.json``)."""
        return "://" not in str(path) and (Path(path) / cls.RESULTS).is_file()

    @property
    def results(self) -> dict:
        return json.loads((self.path / self.RESULTS).read_text())

    @property
    def history(self) -> list[dict]:
        """Per-epoch metrics (``history.json``; the final metrics alone if it is missing)."""
        file = self.path / self.HISTORY
        return json.loads(file.read_text()) if file.is_file() else [self.results.get("final_metrics", {})]

    @property
    def config(self) -> dict:
        return self.results.get("config", {})

    @property
    def checkpoint(self) -> Path | None:
        file = self.path / self.CHECKPOINT
        return file if file.is_file() else None

    @property
    def final(self) -> dict | None:
        return read_json(self.path / self.FINAL)

    def write(self, results: dict, history: list[dict]) -> None:
        write_json(self.path / self.HISTORY, history)
        write_json(self.path / self.RESULTS, results)

    def write_final(self, final: dict) -> None:
        write_json(self.path / self.FINAL, final)
