"""``ecg-ray bench``: statistics, tables, section selection, the report document,
and the Ray-free measurements on a small real prepared dataset (no full benchmark)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from ecg_ray import cli
from ecg_ray.bench import BenchOptions, command_line, parse_sections, render_document, run_bench
from ecg_ray.bench import asha, feed, prepare, runner, stats, train
from ecg_ray.bench.arrays import InMemoryRecords, load_training_records
from ecg_ray.data import store
from ecg_ray.data.errors import DataError

# -- statistics and tables ------------------------------------------------------------------------


def test_summarize_median_min_max():
    s = stats.summarize([3.0, 1.0, 2.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.0, 1.0, 3.0, 3)
    assert stats.summarize([4, 1, 3, 2])["median"] == 2.5
    assert stats.summarize([7])["values"] == [7.0]
    with pytest.raises(ValueError, match="no measurements"):
        stats.summarize([])


def test_ratio_of_medians():
    assert stats.ratio(stats.summarize([10, 20, 30]), stats.summarize([40])) == 0.5
    assert stats.ratio(5.0, 2.0) == 2.5
    assert stats.ratio(None, 2.0) is None and stats.ratio(1.0, 0.0) is None


def test_rates_counts_repeats_and_skips_warmup():
    calls = []

    def step():
        calls.append(1)
        return 100

    out = stats.rates(step, repeats=3, warmup=2)
    assert len(out) == 3 and len(calls) == 5 and all(r > 0 for r in out)
    with pytest.raises(ValueError, match="repeats"):
        stats.rates(step, repeats=0)


def test_markdown_table_rendering():
    table = stats.markdown_table(["path", "rate", "× ref"], [["a", 1234.5, "0.50×"], ["b", 0.1234, None]])
    assert table.splitlines() == [
        "| path | rate | × ref |",
        "| :--- | ---: | ---: |",
        "| a | 1,234 | 0.50× |",
        "| b | 0.123 | — |",
    ]
    with pytest.raises(ValueError, match="2 cells, expected 3"):
        stats.markdown_table(["a", "b", "c"], [[1, 2]])


# -- options and the command line -----------------------------------------------------------------


def test_sections_parse_and_reject_unknown(capsys):
    assert parse_sections("feed, train,feed") == ["feed", "train"]
    with pytest.raises(ValueError, match="unknown benchmark section.*'bogus'.*feed, train, prepare, asha, gpu"):
        parse_sections("feed,bogus")
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--sections", "feed,bogus", "--data", "x"])
    assert e.value.code == 2
    assert "argument --sections: unknown benchmark section(s) 'bogus'" in capsys.readouterr().err


def test_validate_names_the_missing_or_bad_input(tmp_path):
    with pytest.raises(ValueError, match="sections feed need --data"):
        BenchOptions(sections=["feed"]).validate()
    with pytest.raises(DataError, match=str(tmp_path)):
        BenchOptions(sections=["train"], prepared=tmp_path).validate()
    with pytest.raises(ValueError, match="section prepare needs --data-dir"):
        BenchOptions(sections=["prepare"]).validate()
    with pytest.raises(ValueError, match="--repeats must be >= 1"):
        BenchOptions(sections=["prepare"], records_dir=tmp_path, repeats=0).validate()


def test_command_line_parses_back_to_the_same_options(tmp_path):
    opts = BenchOptions(sections=["feed", "asha"], prepared=tmp_path, out=tmp_path / "o", repeats=3,
                        train_records=None, models=["cnn_only", "resnet"], asha_set=["data.max_records=40"])
    command = command_line(opts)
    args = cli.build_parser().parse_args(shlex.split(command)[1:])
    assert args.sections == ["feed", "asha"] and args.repeats == 3 and args.data == tmp_path
    assert args.train_records == 0 and args.models == "cnn_only,resnet"  # 0 = all records
    assert args.asha_set == ["data.max_records=40"] and args.out == tmp_path / "o"


# -- measurements on real data, no Ray ------------------------------------------------------------


def test_training_records_cap_is_stratified(prepared_small):
    index = store.load_index(prepared_small)
    labels = dict(zip(index["record_id"], index["label"]))
    data = load_training_records(prepared_small, max_records=40)
    assert len(data.records) == 40 and set(data.records) <= set(labels)
    assert {labels[r] for r in data.records} == set(labels.values())
    assert "as a run selects it (data.dataset.PreparedDataset.select)" in data.describe()


def test_feed_reference_paths_deliver_two_crops_per_record(prepared_small):
    data = load_training_records(prepared_small, max_records=40)
    signals, labels, length = data.signals, data.labels, data.segment_length
    n = len(labels) * feed.CROPS
    in_memory = feed._crop_step(InMemoryRecords(signals, labels), len(labels), length, 16)
    assert in_memory() == n // 16 * 16  # full batches only, as a training epoch
    assert feed._dataloader_step(signals, labels, length, 16)() == n
    rates = stats.rates(in_memory, repeats=2, warmup=0)
    assert len(rates) == 2 and min(rates) > 0


def test_bare_training_loop_rates(prepared_small):
    data = load_training_records(prepared_small, max_records=40)
    keep = np.concatenate([np.flatnonzero(data.labels == c)[:4] for c in range(4)])  # every class
    small = type(data)([data.signals[i] for i in keep], data.labels[keep], [data.records[i] for i in keep], "test",
                       data.segment_length)
    opts = BenchOptions(repeats=2, warmup=1, batch_size=8, threads=1)
    cfg = train.bench_config("cnn_only", opts)
    assert cfg.num_epochs == 2 and cfg.patience == 0 and cfg.torch_threads == 1  # one round: warm-up + 1
    old = torch.get_num_threads()
    try:
        rates = train.bare_rates(cfg, small, torch.device("cpu"), repeats=2, warmup=1)
    finally:
        torch.set_num_threads(old)
    assert len(rates) == 2 and all(r > 0 for r in rates)
    assert train.steps_per_epoch_of(small, 8, 2) == 32  # 16 records x 2 crops, full batches of 8


def test_shuffle_section_arms_differ_only_in_record_order(prepared_small):
    """The shuffle check's two arms see the same records: the full-shuffle arm in a new
    order each pass; its chunk/buffer span the share of the records a full run's does."""
    from ecg_ray.bench import shuffle

    assert shuffle.scaled_window(shuffle.FULL_SPLIT) == 1024 and shuffle.scaled_window(1000) == 194
    assert shuffle.scaled_window(3) == 1 and shuffle.scaled_window(10**6) == 1024
    data = load_training_records(prepared_small, max_records=40)
    stored = [r for t in data.shard().iter_batches(7) for r in t.column("label_index").to_pylist()]
    mixed = data.shard(shuffle_seed=0)
    passes = [[r for t in mixed.iter_batches(7) for r in t.column("signal").to_pylist()] for _ in range(2)]
    assert stored == data.labels.tolist() and passes[0] != passes[1]
    assert sorted(map(len, passes[0])) == sorted(map(len, data.signals))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only skip")
def test_gpu_section_skips_without_cuda():
    assert "no CUDA device" in train.run_gpu(BenchOptions())["skipped"]


def test_prepare_subset_folder_is_balanced(cinc_dir, tmp_path):
    folder = prepare.subset_folder(cinc_dir, 8, tmp_path)
    lines = (folder / "REFERENCE.csv").read_text().split()
    assert len(lines) == 8 and sorted({l.split(",")[1] for l in lines}) == sorted(["N", "A", "O", "~"])
    assert all((folder / f"{l.split(',')[0]}.mat").resolve().is_file() for l in lines)


# -- the report -----------------------------------------------------------------------------------


def _record(result=None, skipped=None, date="2026-01-01T00:00:00+00:00"):
    rec = {"command": "ecg-ray bench --sections x", "date": date, "machine": {"cores": 2, "ram_gib": 8.0},
           "repeats": 3, "warmup": 1, "load_before": 0.1, "load_after": 0.2, "seconds": 12.0}
    rec.update({"result": result} if result is not None else {"skipped": skipped})
    return rec


def _s(*v):
    return stats.summarize(list(v))


def test_asha_comparison():
    fifo = {"mode": "max", "trial_epochs": 16, "wall_s": 100.0, "best": {"config": "a", "f1": 0.8},
            "per_config": {"a": {"f1": 0.8}, "b": {"f1": 0.7}, "c": {"f1": 0.6}, "d": {"f1": 0.5}}}
    asha_run = {"trial_epochs": 8, "wall_s": 40.0, "best": {"config": "b", "f1": 0.72}, "per_config": {}}
    c = asha.compare(asha_run, fifo)
    assert not c["same_best"] and c["f1_gap"] == pytest.approx(0.08)
    assert c["pick_rank_exhaustive"] == 2 and c["pick_gap_exhaustive"] == pytest.approx(0.1)
    assert c["trial_epochs_ratio"] == 0.5 and c["wall_ratio"] == 0.4


def test_render_document_tables_ratios_and_targets():
    feed_result = {"rows": {"dataloader": _s(100, 90, 110), "numpy_slicing": _s(1000), "train_worker": _s(40, 30, 45)},
                   "notes": ["data: test"]}
    train_result = {"rows": {"cnn_only": {"parameters": 1000, "bare": _s(20, 19, 21), "trainer": _s(15, 14, 16)},
                             "resnet": {"parameters": 2000, "bare": _s(10), "trainer": _s(9.5)}},
                    "segments": 100, "notes": []}
    startup_result = {"rows": {"trainer": _s(9.5, 9.1, 11.0), "tune_trial": _s(14.2)}, "notes": ["1 CPU"]}
    doc = {"sections": {"feed": _record(feed_result), "train": _record(train_result),
                        "gpu": _record(skipped="no CUDA device"), "startup": _record(startup_result)}}
    md = render_document(doc)
    assert "| (c) torch DataLoader, in-memory records cropped in the Dataset — reference | 100 | 90 | 110 | 1.00× |" in md
    assert "| sweep path: dataset shard in a TorchTrainer worker → crop_batches | 40 | 30 | 45 | 0.40× |" in md
    assert "sweep path ≥ 1.0× of (c): 0.40× — **NOT met**" in md
    assert "fastest model's training rate (cnn_only, bare torch 20 crops/s): sweep path is 2× that" in md
    assert "| cnn_only | 1,000 | 20 | 19 | 21 | 15 | 14 | 16 | 0.75 | — | +25% | +1.67 |" in md
    assert "**NOT met** for cnn_only (25%)" in md and "resnet (5%)" not in md
    assert "Skipped: no CUDA device." in md and "`ecg-ray bench --sections x`" in md
    assert md.index("## 1. Data feed") < md.index("## 2. Training") < md.index("## 5. GPU") < md.index("## 7. Start")
    assert "| TorchTrainer.fit(), no datasets | 9.5 | 9.1 | 11 |" in md and "| one Tune trial" in md


def test_run_bench_keeps_sections_it_did_not_run(tmp_path, monkeypatch):
    out = tmp_path / "results"
    out.mkdir()
    feed_result = {"rows": {"dataloader": _s(100)}, "notes": []}
    (out / runner.JSON_NAME).write_text(json.dumps({"sections": {"feed": _record(feed_result)}}))
    fake = {"records": 8, "kept": 8, "segments": 40, "records_dir": "R", "subset": None,
            "rows": {"1": {"wall_s": _s(2.0), "pool_s": _s(1.5), "records_per_s": _s(4.0)}}}
    monkeypatch.setattr(runner, "_runner", lambda name: (lambda opts: fake))
    opts = BenchOptions(sections=["prepare"], records_dir=tmp_path, out=out, repeats=1, command="ecg-ray bench x")
    json_path, md_path = run_bench(opts)
    doc = json.loads(json_path.read_text())
    assert set(doc["sections"]) == {"feed", "prepare"}
    assert doc["sections"]["prepare"]["command"] == "ecg-ray bench x" and doc["sections"]["prepare"]["machine"]["cores"]
    md = md_path.read_text()
    assert "## 1. Data feed" in md and "## 3. prepare" in md and "| 1 | 2 | 2 | 2 | 4 | 4 | 4 | 1.00× | 1.5 |" in md


def test_unreadable_results_file_is_named(tmp_path):
    (tmp_path / runner.JSON_NAME).write_text("{not json")
    with pytest.raises(ValueError, match=f"{tmp_path / runner.JSON_NAME}: not valid JSON"):
        runner.read_existing(tmp_path / runner.JSON_NAME)
    (tmp_path / runner.JSON_NAME).write_text("[1]")
    with pytest.raises(ValueError, match="not an `ecg-ray bench` result"):
        runner.read_existing(Path(tmp_path / runner.JSON_NAME))
