"""Section ``scale``: how ``prepare`` and the sweep feed grow with the data (issue #16).

- **prepare at 1×, 4×, 10×**: the real records replicated under new ids (``A00001``, ``A00001_1``, …: symlinks
  to the same files, a new REFERENCE.csv) in a scratch folder under the system temp dir, prepared from scratch
  with every core, once per scale; wall time, records/s and the peak memory of the whole process tree (sampled:
  RSS summed, and PSS, which counts shared pages once). The split layout is used (what a corpus that streams
  needs); 1× also flat.
- **the sweep feed**: crops/s through the path a trial uses (``load_datasets`` → the dataset shard in a
  one-worker ``TorchTrainer`` → ``crop_batches``, two crops per record per epoch), at 1× and at the largest
  scale: materialized with an object store that holds the data, and streaming with the object store capped
  below it — from the split layout (each epoch reads only the training cells) and, at 1×, from the flat layout
  (each epoch reads every file and filters by record).
- **one long record**: a synthetic single-lead 300 Hz record of ``LONG_DAYS`` (Icentia11k-like, two weeks ≈
  363 M samples) and one of a day, each with a few real records, through ``prepare`` — and the 1-day one
  through the whole-record functions, to show what the chunked path saves.

Every measurement runs in its own process (``python -m ecg_ray.bench.scale MODE …``), watched from here, so its
peak is its own. The scratch folder is deleted at the end. ``$ECG_RAY_SCALE_FACTORS`` (e.g. ``1,2``) and
``$ECG_RAY_SCALE_LONG_DAYS`` shrink the run for a quick check; ``$ECG_RAY_SCALE_PARTS`` (``prepare,feed,long``)
picks parts (feed needs prepare); ``$ECG_RAY_SCALE_PREPARE_REPEATS`` (default 1) runs ``prepare`` that many
times per scale and reports the run with the median wall time, every wall time beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ..data.download import source_dir
from . import stats
from .machine import env_option, env_settings
from .prepare import link_records, read_labels, timed_prepare
from .stats import fmt_ratio, markdown_table

SCALES = (1, 4, 10)
LONG_DAYS = 14.0
FS = 300

#: Real records that keep a long record company (splits need at least 5 records).
COMPANY = 12
MiB = 2**20


def scale_config():
    """The preprocessing this bench measures (fixed, so its tables stay comparable): records at their own 300 Hz, which
    is what lets a long record take prepare's chunked path (``filter_record_chunked`` does not resample)."""
    from ..data.preprocess import PreprocessConfig

    return PreprocessConfig(fs=FS, segment_length=10 * FS, stride=5 * FS)


def _comma_set(text: str) -> set[str]:
    return {x.strip() for x in text.split(",") if x.strip()}


# -- scratch data ---------------------------------------------------------------------------------

def replicate(records_dir: Path, factor: int, into: Path, limit: int | None = None) -> Path:
    """A records folder holding every real record ``factor`` times under new ids (copy 0 keeps the real name, copy c is
    ``<name>_<c>``): symlinks to the real ``.hea``/``.mat`` and a REFERENCE.csv for all of them."""
    from ..data import physionet2017

    labels = read_labels(records_dir)
    names = sorted(n for n in physionet2017.list_records(records_dir) if n in labels)[:limit]
    return link_records(records_dir, names, labels, into, factor)


def write_long_record(folder: Path, name: str, days: float, fs: int = FS, chunk: int = 1 << 22) -> int:
    """A synthetic single-lead record of ``days`` at ``fs`` in the PhysioNet 2017 layout (MATLAB v4 int16 row ``val``
    + WFDB header, 1000 adu/mV) in chunks: 72 bpm beats (QRS + T wave), baseline wander, noise; returns its length."""
    n = int(round(days * 86400 * fs))
    beat = int(fs * 60 / 72)
    t = np.arange(beat) / fs
    template = 1.2 * np.exp(-((t - 0.25) / 0.012) ** 2) - 0.15 * np.exp(-((t - 0.23) / 0.01) ** 2) \
        + 0.3 * np.exp(-((t - 0.5) / 0.05) ** 2)
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.mat", "wb") as f:
        f.write(np.array([30, 1, n, 0, 4], dtype="<i4").tobytes() + b"val\0")
        first = None
        for a in range(0, n, chunk):
            i = np.arange(a, min(a + chunk, n))
            mv = template[i % beat] + 0.2 * np.sin(2 * np.pi * 0.25 * i / fs) + rng.normal(0, 0.03, len(i))
            adu = np.clip(np.round(mv * 1000), -32768, 32767).astype("<i2")
            first = int(adu[0]) if first is None else first
            adu.tofile(f)
    (folder / f"{name}.hea").write_text(f"{name} 1 {fs} {n}\n{name}.mat 16+24 1000/mV 16 0 {first} 0 0 ECG\n")
    return n


def long_folder(records_dir: Path, into: Path, days: float | None) -> Path:
    """``COMPANY`` real records (symlinks), plus one synthetic record of ``days`` if given."""
    replicate(records_dir, 1, into, limit=COMPANY)
    if days:
        write_long_record(into, "L00001", days)
        with open(into / "REFERENCE.csv", "a") as f:
            f.write("L00001,N\n")
    return into


# -- watching a child process tree ----------------------------------------------------------------

def watched(args: list[str], interval: float = 0.25, timeout: float = 3600) -> dict:
    """Run ``python -m ecg_ray.bench.scale *args`` and sample the memory of its whole
    process tree every ``interval`` s; its last stdout line is its JSON result."""
    import psutil

    cmd = [sys.executable, "-m", "ecg_ray.bench.scale", *map(str, args)]
    samples = [(0, 0, 0, 0)]  # (RSS summed, PSS summed, largest RSS, processes) of the tree
    stop = threading.Event()

    def sample(proc):
        while not stop.is_set():
            try:
                procs = [proc, *proc.children(recursive=True)]
            except psutil.Error:
                procs = []
            memory = []
            for p in procs:
                try:
                    memory.append(p.memory_full_info())
                except psutil.Error:
                    continue
            rss = [m.rss for m in memory]
            samples.append((sum(rss), sum(getattr(m, "pss", m.rss) for m in memory), max(rss, default=0), len(procs)))
            stop.wait(interval)

    # output to files, not pipes: a daemon the child starts (Ray's) may keep a pipe open after it exits
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = psutil.Popen(cmd, stdout=out, stderr=err)
        watcher = threading.Thread(target=sample, args=(proc,), daemon=True)
        watcher.start()
        try:
            rc = proc.wait(timeout)
        finally:
            stop.set()
            watcher.join()
            if proc.is_running():
                proc.kill()
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        lines = out.read().strip().splitlines()
        if rc != 0 or not lines:
            raise RuntimeError(f"bench scale {' '.join(map(str, args))} failed ({rc}): {err.read()[-3000:]}")
    rss, pss, top, processes = np.max(samples, axis=0).tolist()
    result = json.loads(lines[-1])
    result.update(process_wall_s=round(wall, 2), peak_rss_mib=round(rss / MiB), peak_pss_mib=round(pss / MiB),
                  peak_process_rss_mib=round(top / MiB), processes=processes)
    return result


# -- the children ---------------------------------------------------------------------------------

def _child_prepare(records: str, out: str, workers: str, layout: str) -> dict:
    wall, m = timed_prepare(Path(records), Path(out), int(workers), cfg=scale_config(), split_layout=layout == "split")
    total = m["n_records"] + len(m["skipped"])
    parts = sum("_p" in r for split in ("train", "val", "test") for r in m["splits"]["split"][split])
    return {"wall_s": round(wall, 2), "pool_s": m["seconds"], "layout_s": m.get("layout_seconds"),
            "records": total, "kept": m["n_records"], "segments": m["n_segments"], "long_parts": parts,
            "records_per_s": round(total / wall, 1),
            "out_mib": round(sum(p.stat().st_size for p in Path(out).rglob("*.parquet")) / MiB)}


def _child_feed(prepared: str, store_mib: str, materialize: str, repeats: str, warmup: str,
                batch_size: str) -> dict:
    from types import SimpleNamespace

    import ray

    from ..data import store
    from ..training.feed import load_datasets
    from ..training.trainer import init_ray
    from .feed import _train_worker_rates

    # a Ray of its own in a short folder (socket paths < 108 chars), no dashboard in its memory peak
    session = os.environ["ECG_RAY_TMPDIR"] = tempfile.mkdtemp(prefix="ecgsc", dir="/tmp")
    init_ray(worker_logs=False, object_store_memory=int(store_mib) * MiB, include_dashboard=False)
    try:
        t0 = time.perf_counter()
        train_ds, val_ds, info = load_datasets(Path(prepared), None, materialize=materialize == "1")
        load_s = time.perf_counter() - t0
        opts = SimpleNamespace(warmup=int(warmup), repeats=int(repeats), batch_size=int(batch_size))
        rates = _train_worker_rates(train_ds, val_ds, info, opts)
        data_mib = float(store.load_index(Path(prepared))["n_samples"].sum()) * 4 / MiB
    finally:
        ray.shutdown()
        shutil.rmtree(session, ignore_errors=True)
    return {"rates": rates, "load_s": round(load_s, 2), "train_records": info.train_records,
            "materialized": info.materialized, "data_mib": round(data_mib), "store_mib": int(store_mib),
            "layout": store.read_manifest(Path(prepared)).get("layout", "flat")}


def _child_whole(records: str, name: str) -> dict:
    """The whole-record functions (``read_record`` + ``filtered_record``) on one record."""
    from ..data import physionet2017
    from ..data.preprocess import filtered_record

    t0 = time.perf_counter()
    signal, fs = physionet2017.read_record(Path(records), name)
    filtered, n, _ = filtered_record(signal, fs, scale_config(), name)
    return {"wall_s": round(time.perf_counter() - t0, 2), "samples": len(filtered), "windows": n}


CHILDREN = {"prepare": _child_prepare, "feed": _child_feed, "whole": _child_whole}


# -- the section ----------------------------------------------------------------------------------

def _log(text: str) -> None:
    print(f"bench scale: {text}", file=sys.stderr, flush=True)


def _feed_rows(prepared: Path, scale: int, layout: str, opts, data_mib: float) -> dict:
    """Materialized (store holds the data) and streaming (store capped below it) at one scale."""
    rows = {}
    fit = int(max(1024, 2 * data_mib))
    capped = int(max(100, min(256, data_mib / 2)))
    plan = [("materialized", fit, "1"), ("streaming", capped, "0")]
    if layout == "flat":
        plan = plan[1:]  # streamed only
    for kind, store_mib, mat in plan:
        key = f"{scale}x_{layout}_{kind}"
        _log(f"feed {key} (object store {store_mib} MiB)")
        row = watched(["feed", prepared, store_mib, mat, opts.repeats, opts.warmup, opts.batch_size])
        row["crops_per_s"] = stats.summarize(row.pop("rates"))
        rows[key] = {"scale": scale, "layout": layout, "kind": kind, **row}
        _log(f"  {row['crops_per_s']['median']:,.0f} crops/s, peak PSS {row['peak_pss_mib']} MiB")
    return rows


def run(opts) -> dict:
    records_dir = source_dir(opts.records_dir, "cinc2017")
    workers = os.cpu_count() or 1
    scales = env_option("ECG_RAY_SCALE_FACTORS", list(SCALES), lambda text: sorted({int(x) for x in _comma_set(text)}))
    parts = env_option("ECG_RAY_SCALE_PARTS", {"prepare", "feed", "long"}, _comma_set)
    keep = {1, scales[-1]} if "feed" in parts else set()
    with tempfile.TemporaryDirectory(prefix="ecg_scale_", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        result = {"records_dir": str(opts.records_dir), "workers": workers, "scales": scales, "prepare": {},
                  "feed": {}, "long": {}, "scratch": str(work), "env": env_settings("ECG_RAY_SCALE_")}
        for s in (scales if "prepare" in parts else []):
            folder = replicate(records_dir, s, work / f"records_x{s}")
            for layout in (["flat", "split"] if s == 1 else ["split"]):
                out = work / f"prepared_x{s}_{layout}"
                runs = []
                for i in range(max(env_option("ECG_RAY_SCALE_PREPARE_REPEATS", 1, int), 1)):  # each from scratch
                    shutil.rmtree(out, ignore_errors=True)
                    _log(f"prepare {s}x ({layout} layout), run {i + 1} …")
                    runs.append(watched(["prepare", folder, out, workers, layout]))
                row = sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]
                row["wall_runs"] = [r["wall_s"] for r in runs]
                result["prepare"][f"{s}x_{layout}"] = {"scale": s, "layout": layout, **row}
                _log(f"  {row['wall_s']} s, {row['records_per_s']} records/s, peak PSS {row['peak_pss_mib']} MiB")
                if s not in keep:
                    shutil.rmtree(out)
            shutil.rmtree(folder)
        for s in sorted(keep):
            for layout in (["split", "flat"] if s == 1 else ["split"]):
                out = work / f"prepared_x{s}_{layout}"
                data_mib = result["prepare"][f"{s}x_{layout}"]["out_mib"]
                result["feed"].update(_feed_rows(out, s, layout, opts, data_mib))
                shutil.rmtree(out)
        days = env_option("ECG_RAY_SCALE_LONG_DAYS", LONG_DAYS, float)
        for label, d in (("company only", None), ("1 day", 1.0), (f"{days:g} days", days)):
            if "long" not in parts or d is not None and d > days:
                continue
            folder = long_folder(records_dir, work / "long", d)
            _log(f"long record: {label} …")
            row = watched(["prepare", folder, work / "long_out", workers, "flat"])
            row["days"] = d
            if d == 1.0:
                row["whole_record_path"] = watched(["whole", folder, "L00001"])
            result["long"][label] = row
            _log(f"  {row['wall_s']} s, peak PSS {row['peak_pss_mib']} MiB")
            shutil.rmtree(folder)
            shutil.rmtree(work / "long_out")
    return _carry_over(result, opts)


def _carry_over(result: dict, opts) -> dict:
    """Rows this run did not measure (a part or a scale left out) kept from the previous
    result in ``--out``, each marked with the date of the run that measured it."""
    from .runner import JSON_NAME, read_existing

    old = read_existing(Path(opts.out) / JSON_NAME)["sections"].get("scale", {})
    for part in ("prepare", "feed", "long"):
        for key, row in old.get("result", {}).get(part, {}).items():
            if key not in result[part]:
                result[part][key] = {**row, "from_run": row.get("from_run", old.get("date"))}
    return result


def _label(row: dict, label: str) -> str:
    return f"{label} (run of {row['from_run'][:10]})" if row.get("from_run") else label


# -- the report -----------------------------------------------------------------------------------

def render(result: dict, context: dict) -> str:
    out = stats.environment(result.get("env"))
    prep = result["prepare"]
    base = prep.get("1x_split")
    table = []
    for r in prep.values():
        wall = stats.ratio(r["wall_s"], base and base["wall_s"])
        table.append([_label(r, f"{r['scale']}×"), r["layout"], r["records"], r["wall_s"], r["pool_s"],
                      r.get("layout_s"), r["records_per_s"], f"{wall:.2f}× (scale {r['scale']}×)" if wall else "—",
                      r["peak_pss_mib"], r["peak_rss_mib"], r["peak_process_rss_mib"],
                      fmt_ratio(stats.ratio(r["peak_pss_mib"], base and base["peak_pss_mib"])), r["out_mib"]])
    out.append(markdown_table(["scale", "layout", "records", "wall s", "pool s", "regroup s", "records/s",
                               "wall / 1× split", "peak PSS MiB", "peak RSS sum MiB", "largest process MiB",
                               "PSS / 1× split", "parquet MiB"], table))
    n = max((len(r.get("wall_runs", [1])) for r in prep.values()), default=1)
    walls = "; ".join(f"{k} " + ", ".join(map(str, r["wall_runs"])) for k, r in prep.items() if "wall_runs" in r)
    runs = f"{n} runs per scale: the run with the median wall time (all: {walls} s)" if n > 1 else "once per scale"
    out.append(f"- `prepare` with {result['workers']} processes, from scratch, {runs}; the replicas are symlinks to "
               "the real files under new ids. PSS counts shared pages once (the honest total); RSS summed over the "
               "tree counts them in every process.")
    if base:
        top = max(prep.values(), key=lambda r: r["scale"])
        t = top["wall_s"] / base["wall_s"]
        m = top["peak_pss_mib"] / base["peak_pss_mib"]
        out.append(f"- target: {top['scale']}× the records in ≤ {top['scale']}× the time: {t:.2f}× — "
                   + ("**met**" if t <= top["scale"] else "**NOT met**")
                   + f"; peak memory within 1.5× of 1×: {m:.2f}× — " + ("**met**" if m <= 1.5 else "**NOT met**"))
    if feed := result["feed"]:
        rows, targets = [], []
        for key, r in feed.items():
            ref = feed.get(f"{r['scale']}x_split_materialized")
            ratio = stats.ratio(r["crops_per_s"], ref and ref["crops_per_s"])
            rows.append([_label(r, f"{r['scale']}×"), r["layout"], r["kind"], r["train_records"],
                         r["data_mib"], r["store_mib"], *stats.summary_cells(r["crops_per_s"]),
                         fmt_ratio(ratio), r["load_s"], r["peak_pss_mib"], r["peak_rss_mib"]])
            if r["kind"] == "streaming" and r["layout"] == "split" and ref:
                targets.append(f"- target at {r['scale']}×: streaming ≥ 0.5× materialized: {ratio:.2f}× — "
                               + ("**met**" if ratio >= 0.5 else "**NOT met**"))
        out += ["", markdown_table(["scale", "layout", "feed", "train records", "data MiB", "object store MiB",
                                    "crops/s (median)", "min", "max", "× materialized", "load s", "peak PSS MiB",
                                    "peak RSS sum MiB"], rows)]
        out.append("- the sweep path: `load_datasets` → dataset shard in a one-worker `TorchTrainer` (1 CPU, as a "
                   "trial) → `crop_batches`, 2 crops per record per epoch; one epoch per repeat after warm-up. "
                   "Streaming re-reads parquet every epoch: from the split layout the rank reads its own row "
                   "groups of the training cells with pyarrow (`data.shards`, no Ray Data); from the flat layout "
                   "Ray Data reads every file and filters by record id.")
        out += targets
    if long := result["long"]:
        rows = []
        for label, r in long.items():
            rows.append([_label(r, label), r["records"], r["long_parts"], r["wall_s"],
                         r["peak_pss_mib"], r["peak_process_rss_mib"], r["out_mib"]])
            if whole := r.get("whole_record_path"):
                rows.append([f"{label}, whole-record functions (old path)", "1", "—", whole["wall_s"],
                             whole["peak_pss_mib"], whole["peak_process_rss_mib"], "—"])
        out += ["", markdown_table(["folder", "records", "stored parts", "wall s", "peak PSS MiB",
                                    "largest process MiB", "parquet MiB"], rows)]
        out.append(f"- {COMPANY} real records plus one synthetic single-lead {FS} Hz record (72 bpm beats, baseline "
                   "wander, noise; MATLAB v4 int16 as in PhysioNet 2017), through `prepare` (flat layout): records "
                   "longer than `prepare.LONG_SAMPLES` are filtered in pieces of `PART_SAMPLES` with the filter "
                   "state carried over and stored as parts, so memory does not grow with the record.")
    return "\n".join(out)


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    print(json.dumps(CHILDREN[mode](*args)))
