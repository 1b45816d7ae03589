"""Section ``prepare``: wall time of ``ecg-ray prepare`` on a records folder and
records/s with each number of processes (``--prepare-workers``, default 1 and 2).

Every repeat prepares from scratch (``force``) into a temporary folder that is
deleted afterwards; one untimed run with the most processes warms the file
cache first. ``--prepare-records N`` times a label-balanced subset instead
(symlinks to the real files), for quick checks.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from . import stats
from .stats import markdown_table, summary_cells


def subset_folder(records_dir: Path, n: int, into: Path) -> Path:
    """A records folder of about ``n`` records, an equal share of each label
    (symlinks to the real files plus a REFERENCE.csv of just those)."""
    from ..data import physionet2017

    labels = physionet2017.read_labels(physionet2017.find_label_file(records_dir, None))
    by_label: dict[str, list[str]] = {}
    for name, label in sorted(labels.items()):
        by_label.setdefault(label, []).append(name)
    chosen = sorted(r for members in by_label.values() for r in members[:max(1, n // len(by_label))])
    folder = into / "records"
    folder.mkdir(parents=True)
    for name in chosen:
        for ext in (".hea", ".mat"):
            (folder / f"{name}{ext}").symlink_to((Path(records_dir) / f"{name}{ext}").resolve())
    (folder / "REFERENCE.csv").write_text("".join(f"{r},{labels[r]}\n" for r in chosen))
    return folder


def _one(records_dir: Path, workers: int, work: Path) -> tuple[float, dict]:
    from ..data.prepare import prepare

    out = work / f"prepared_{workers}"
    t0 = time.perf_counter()
    manifest = prepare("cinc2017", records_dir, out, workers=workers, force=True, log=lambda *a, **k: None)
    wall = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return wall, manifest


def run(opts) -> dict:
    records_dir = Path(opts.records_dir)
    work = Path(tempfile.mkdtemp(prefix="ecg_bench_prepare_"))
    try:
        if opts.prepare_records:
            records_dir = subset_folder(records_dir, opts.prepare_records, work)
        workers = sorted(set(opts.prepare_workers))
        if opts.warmup:
            _one(records_dir, workers[-1], work)
        rows, manifest = {}, None
        for w in workers:
            walls, pools = [], []
            for _ in range(opts.repeats):
                wall, manifest = _one(records_dir, w, work)
                walls.append(wall)
                pools.append(manifest["seconds"])
            total = manifest["n_records"] + len(manifest["skipped"])
            rows[str(w)] = {"wall_s": stats.summarize(walls), "pool_s": stats.summarize(pools),
                            "records_per_s": stats.summarize([total / s for s in walls])}
            print(f"bench prepare: {w} process(es) {rows[str(w)]['wall_s']['median']:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"records": total, "kept": manifest["n_records"], "segments": manifest["n_segments"],
            "records_dir": str(opts.records_dir), "subset": opts.prepare_records, "rows": rows}


def render(result: dict, context: dict) -> str:
    rows = result["rows"]
    ref = rows.get("1", {}).get("records_per_s")
    table = [[w, *summary_cells(r["wall_s"]), *summary_cells(r["records_per_s"]),
              "—" if ref is None else f"{stats.ratio(r['records_per_s'], ref):.2f}×", r["pool_s"]["median"]]
             for w, r in rows.items()]
    out = [markdown_table(["processes", "wall s (median)", "min", "max", "records/s (median)", "min", "max",
                           "× 1 process", "of which pool s"], table)]
    subset = f" (a {result['subset']}-record subset)" if result.get("subset") else ""
    out.append(f"- {result['records']:,} records{subset} from `{result['records_dir']}` → {result['kept']:,} kept, "
               f"{result['segments']:,} segments; wall = the whole `prepare` call (splits and manifest "
               "included), pool = reading + preprocessing + writing parquet")
    return "\n".join(out)
