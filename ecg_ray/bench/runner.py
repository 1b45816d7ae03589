"""``ecg-ray bench``: run the selected sections, record each with the exact command, machine and date, and
write ``benchmarks.json`` (raw numbers) and ``benchmarks.md`` (tables) into ``--out``.

Sections already in an existing ``benchmarks.json`` that this run does not measure are kept (each says which
command, date and machine it came from), so the long ``asha`` section can run on its own, in the background,
into the same file. The JSON is rewritten after every section, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..artifacts import write_json
from . import machine

#: name → heading, in the order of the report; each section is the module of its name (gpu: train's run_gpu).
SECTIONS = {
    "feed": "1. Data feed: training crops/s delivered to a training loop, no model",
    "train": "2. Training throughput per architecture: TorchTrainer vs bare torch (CPU)",
    "prepare": "3. prepare: wall time and records/s per process count",
    "asha": "4. ASHA savings: ASHA vs the exhaustive grid",
    "gpu": "5. GPU: training throughput on CUDA",
    "scale": "6. Scale: prepare and the sweep feed at 1×, 4×, 10× the records; one two-week record",
    "startup": "7. Start-up: what a Ray Train run and a Tune trial cost before training",
    "shuffle": "8. Shuffle quality: the feed's local crop shuffle vs a full shuffle, loss and F1",
}
NEEDS_DATA = ("feed", "train", "asha", "gpu", "startup", "shuffle")
JSON_NAME, MD_NAME = "benchmarks.json", "benchmarks.md"


class SectionError(argparse.ArgumentTypeError, ValueError):
    """An unknown ``--sections`` name (argparse shows it as the argument's error)."""


def parse_sections(text: str) -> list[str]:
    names = [s.strip() for s in str(text).split(",") if s.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown or not names:
        raise SectionError(f"unknown benchmark section(s) {', '.join(map(repr, unknown)) or repr(text)}; "
                           f"choose from {', '.join(SECTIONS)} (comma-separated)")
    return list(dict.fromkeys(names))


@dataclass
class BenchOptions:
    sections: list[str] = field(default_factory=lambda: list(SECTIONS))
    prepared: Path | None = None  # --data
    records_dir: Path | None = None  # resolved --data-dir, for prepare
    out: Path = Path("results")
    repeats: int = 5
    warmup: int = 1
    batch_size: int = 64
    feed_records: int | None = None  # None: the whole training split
    train_records: int | None = 200
    models: list[str] | None = None  # None: every registered model
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    prepare_workers: list[int] = field(default_factory=lambda: [1, 2])
    prepare_records: int | None = None
    asha_spec: Path | None = None
    asha_set: list[str] = field(default_factory=list)
    storage: str = "ray_results/bench"
    command: str = ""

    def validate(self) -> None:
        from ..data import store
        from ..models import model_names

        self.sections = parse_sections(",".join(self.sections))
        for name in ("repeats", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be >= 0, got {self.warmup}")
        if needing := [s for s in self.sections if s in NEEDS_DATA]:
            if self.prepared is None:
                raise ValueError(f"sections {', '.join(needing)} need --data PREPARED (an `ecg-ray prepare` folder)")
            store.read_manifest(self.prepared)  # DataError naming the folder if it is not one
        for name in ("prepare", "scale"):
            if name in self.sections and self.records_dir is None:
                raise ValueError(f"section {name} needs --data-dir (the raw records folder)")
        if unknown := sorted(set(self.models or []) - set(model_names())):
            raise ValueError(f"--models: unknown model(s) {', '.join(unknown)}; choose from {', '.join(model_names())}")
        if "prepare" in self.sections and (not self.prepare_workers or min(self.prepare_workers) < 1):
            raise ValueError(f"--prepare-workers must be positive integers, got {self.prepare_workers}")
        if "asha" in self.sections and machine.ray_available():
            from ..tuning.search_space import load_spec
            from .asha import DEFAULT_SPEC

            load_spec(self.asha_spec or DEFAULT_SPEC, self.asha_set)  # fail now, not after an hour of other sections


def _module(name: str):
    return importlib.import_module(f"{__package__}.{'train' if name == 'gpu' else name}")


def _runner(name: str):
    return getattr(_module(name), "run_gpu" if name == "gpu" else "run")


def read_existing(path: Path) -> dict:
    if not path.is_file():
        return {"sections": {}}
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); move it away or choose another --out") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("sections"), dict):
        raise ValueError(f"{path}: not an `ecg-ray bench` result (no 'sections'); move it away or choose another --out")
    return doc


def run_bench(opts: BenchOptions) -> tuple[Path, Path]:
    """Run the sections of ``opts``; returns the paths of the JSON and markdown written."""
    opts.validate()
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / JSON_NAME, out / MD_NAME
    read_existing(json_path)  # refuse an unreadable file before measuring anything
    facts = machine.machine_facts()
    try:
        for name in opts.sections:
            print(f"bench: section {name} …", file=sys.stderr, flush=True)
            once = name == "asha"  # one sweep of each kind: too long to repeat
            record = {"command": opts.command, "date": machine.now(), "machine": facts,
                      "repeats": 1 if once else opts.repeats, "warmup": 0 if once else opts.warmup,
                      "load_before": machine.load_average()}
            t0 = time.perf_counter()
            if name == "asha" and not machine.ray_available():
                result = {"skipped": "ray is not installed"}
            else:
                result = _runner(name)(opts)
            record.update({"skipped": result["skipped"]} if "skipped" in result else {"result": result})
            record.update(seconds=round(time.perf_counter() - t0, 1), load_after=machine.load_average())
            doc = read_existing(json_path)  # again: another bench run may have written meanwhile
            doc["sections"][name] = record
            write_json(json_path, doc)
            md_path.write_text(render_document(doc))
    finally:
        ray = sys.modules.get("ray")  # imported (and maybe started) only by the sections that need it
        if ray is not None and ray.is_initialized():
            ray.shutdown()
    return json_path, md_path


def _run_line(record: dict, header_facts: dict, show_command: bool) -> str:
    line = (f"_{record['date']} — {record['repeats']} repeat(s) after {record['warmup']} warm-up — load average "
            f"{record.get('load_before')} before, {record.get('load_after')} after — took {record['seconds']:.0f} s_")
    if show_command:
        line = f"_Command: `{record['command']}`_  \n" + line
    if record["machine"] != header_facts:
        line += f"  \n_Machine: {machine.describe(record['machine'])}_"
    return line


def render_document(doc: dict) -> str:
    sections = doc["sections"]
    latest = max(sections.values(), key=lambda r: r["date"])
    commands = list(dict.fromkeys(r["command"] for r in sections.values()))
    context = {}
    if train := sections.get("train", {}).get("result"):
        from .train import fastest_bare

        context["fastest_train_rate"] = fastest_bare(train)
    lines = ["# Benchmarks", "",
             f"Written by `ecg-ray bench` (`ecg_ray/bench/`); the raw numbers are in `{JSON_NAME}`. Every figure is "
             "the median of the repeats, min and max beside it, after untimed warm-up runs; ratios are of medians.",
             ""]
    if len(commands) == 1:
        lines += [f"Command: `{commands[0]}`", ""]
    lines += [f"Machine: {machine.describe(latest['machine'])}", ""]
    for name in (n for n in SECTIONS if n in sections):
        record = sections[name]
        body = (f"Skipped: {record['skipped']}." if "skipped" in record
                else _module(name).render(record["result"], context))
        lines += [f"## {SECTIONS[name]}", "", _run_line(record, latest["machine"], len(commands) > 1), "", body, ""]
    return "\n".join(lines)


def _flags(opts: BenchOptions, data_dir: Path | None) -> dict:
    return {"--data": opts.prepared, "--data-dir": data_dir, "--out": opts.out, "--repeats": opts.repeats,
            "--warmup": opts.warmup, "--batch-size": opts.batch_size, "--feed-records": opts.feed_records or 0,
            "--train-records": opts.train_records or 0, "--threads": opts.threads,
            "--models": ",".join(opts.models) if opts.models else None,
            "--prepare-workers": ",".join(map(str, opts.prepare_workers)),
            "--prepare-records": opts.prepare_records, "--asha-spec": opts.asha_spec, "--storage": opts.storage}


def command_line(opts: BenchOptions, data_dir: Path | None = None) -> str:
    """The ``ecg-ray bench`` command that reproduces ``opts`` (flags that differ from the defaults)."""
    defaults = _flags(BenchOptions(), None)
    args = ["ecg-ray", "bench", "--sections", ",".join(opts.sections)]
    for flag, value in _flags(opts, data_dir).items():
        if value is not None and (flag in ("--data", "--data-dir", "--out") or value != defaults[flag]):
            args += [flag, str(value)]
    for item in opts.asha_set:
        args += ["--asha-set", item]
    return shlex.join(args)
