"""Section ``prepare``: wall time of ``ecg-ray prepare`` on a records folder and records/s with each number of
processes (``--prepare-workers``, default 1 and 2).

Every repeat prepares from scratch (``force``) into a temporary folder that is deleted afterwards; one untimed
run with the most processes warms the file cache first. ``--prepare-records N`` times a label-balanced subset
instead (symlinks to the real files), for quick checks.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from . import stats
from .stats import fmt_ratio, markdown_table, section_body, summary_cells


def read_labels(records_dir: Path) -> dict[str, str]:
    """``record → label`` of a PhysioNet 2017 records folder."""
    from ..data import physionet2017

    return physionet2017.read_labels(physionet2017.find_label_file(records_dir, None))


def link_records(records_dir: Path, names: list[str], labels: dict[str, str], into: Path, copies: int = 1) -> Path:
    """A records folder ``into`` of symlinks to the real ``.hea``/``.mat`` of ``names``, each ``copies`` times (copy 0
    keeps the real name, copy c is ``<name>_<c>``), and a REFERENCE.csv of all of them."""
    records_dir = Path(records_dir).resolve()
    into.mkdir(parents=True)
    lines = []
    for c in range(copies):
        for name in names:
            new = name if c == 0 else f"{name}_{c}"
            for ext in (".hea", ".mat"):
                (into / f"{new}{ext}").symlink_to(records_dir / f"{name}{ext}")
            lines.append(f"{new},{labels[name]}\n")
    (into / "REFERENCE.csv").write_text("".join(lines))
    return into


def subset_folder(records_dir: Path, n: int, into: Path) -> Path:
    """A records folder of about ``n`` records, an equal share of each label
    (symlinks to the real files plus a REFERENCE.csv of just those)."""
    import pandas as pd

    labels = read_labels(records_dir)
    by_name = pd.Series(labels).sort_index()
    chosen = by_name.groupby(by_name).head(max(1, n // by_name.nunique())).index
    return link_records(records_dir, sorted(chosen), labels, into / "records")


def timed_prepare(records_dir: Path, out: Path, workers: int, **options) -> tuple[float, dict]:
    """Wall seconds and manifest of ``ecg-ray prepare`` of ``records_dir`` into ``out``, from scratch."""
    from ..data.prepare import prepare

    t0 = time.perf_counter()
    manifest = prepare("cinc2017", records_dir, out, workers=workers, force=True, log=lambda *a, **k: None, **options)
    return time.perf_counter() - t0, manifest


def _one(records_dir: Path, workers: int, work: Path) -> tuple[float, dict]:
    out = work / f"prepared_{workers}"
    wall, manifest = timed_prepare(records_dir, out, workers)
    shutil.rmtree(out, ignore_errors=True)
    return wall, manifest


def run(opts) -> dict:
    records_dir = Path(opts.records_dir)
    with tempfile.TemporaryDirectory(prefix="ecg_bench_prepare_", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        if opts.prepare_records:
            records_dir = subset_folder(records_dir, opts.prepare_records, work)
        workers = sorted(set(opts.prepare_workers))
        if opts.warmup:
            _one(records_dir, workers[-1], work)
        rows = {}
        for w in workers:
            walls, manifests = zip(*[_one(records_dir, w, work) for _ in range(opts.repeats)])
            manifest = manifests[-1]
            total = manifest["n_records"] + len(manifest["skipped"])
            rows[str(w)] = {"wall_s": stats.summarize(walls),
                            "pool_s": stats.summarize([m["seconds"] for m in manifests]),
                            "records_per_s": stats.summarize([total / s for s in walls])}
            print(f"bench prepare: {w} process(es) {rows[str(w)]['wall_s']['median']:.1f} s", flush=True)
    return {"records": total, "kept": manifest["n_records"], "segments": manifest["n_segments"],
            "records_dir": str(opts.records_dir), "subset": opts.prepare_records, "rows": rows}


def render(result: dict, context: dict) -> str:
    rows = result["rows"]
    ref = rows.get("1", {}).get("records_per_s")
    table = [[w, *summary_cells(r["wall_s"]), *summary_cells(r["records_per_s"]),
              fmt_ratio(stats.ratio(r["records_per_s"], ref)), r["pool_s"]["median"]]
             for w, r in rows.items()]
    subset = f" (a {result['subset']}-record subset)" if result.get("subset") else ""
    return section_body(markdown_table(["processes", "wall s (median)", "min", "max", "records/s (median)", "min",
                                        "max", "× 1 process", "of which pool s"], table),
                        [f"{result['records']:,} records{subset} from `{result['records_dir']}` → {result['kept']:,} "
                         f"kept, {result['segments']:,} segments; wall = the whole `prepare` call (splits and manifest "
                         "included), pool = reading + preprocessing + writing parquet"])
