"""``ecg-ray`` entry point: parse arguments, call the stage, nothing else.

Every known failure (bad input, bad spec, missing file) ends as one line ``ecg-ray: error: ...``
on stderr and exit status 2, not a traceback. A command returns its exit status, or on success
what it reports on stdout: a dict (printed as one JSON line) or text.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

from . import HEADLINE
from .data.errors import DataError, RecordError
from .data.sources import DEFAULT_SOURCE, NAMES as SOURCES


LABELS_HELP = "label file (default: REFERENCE.csv beside records)"


def _add_data_args(p: argparse.ArgumentParser) -> None:
    """Which records folder to read, with which labels (prepare, evaluate)."""
    p.add_argument("--source", choices=SOURCES, default=DEFAULT_SOURCE)
    p.add_argument("--data-dir", type=Path, help="records folder, or a data root holding cinc2017/ and mitdb/ "
                                                 "(default: $ECG_RAY_DATA, else the download cache)")
    p.add_argument("--labels", type=Path, help=LABELS_HELP)
    p.add_argument("--window", type=float, default=30.0, help="MIT-BIH window length (s)")


def _add_split_args(p: argparse.ArgumentParser, use: str) -> None:
    """``--records-from-split`` of ``--prepared``'s saved split (evaluate, explain)."""
    p.add_argument("--records-from-split", choices=("train", "val", "test"),
                   help=f"{use} this split's records of --prepared")
    p.add_argument("--prepared", type=Path, help="prepared dataset whose saved split to use")


def _add_model_args(p: argparse.ArgumentParser, what: str = "model.pt, run folder, export archive or .ts") -> None:
    """The checkpoint to run and torch's CPU threads for it (calibrate, evaluate, predict, explain)."""
    p.add_argument("--checkpoint", type=Path, required=True, help=what)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")


def cmd_download(args) -> Path:
    from .data.download import data_root, download

    return download(data_root(args.data_dir), sources=args.sources)  # the data root


def resolve_records_dir(source: str, data_dir: Path | None, log=print) -> Path:
    """The records folder for ``source``: the one given (never downloaded into),
    else under $ECG_RAY_DATA or the cache, downloaded there when missing."""
    from .data.download import data_root, ensure_data, source_dir

    if data_dir:
        return source_dir(data_dir, source)
    return ensure_data(data_root(None), source, log=log)


def cmd_prepare(args) -> int:
    from .data.prepare import SplitConfig, prepare
    from .data.preprocess import PreprocessConfig

    records = resolve_records_dir(args.source, args.data_dir)
    split = SplitConfig(seed=args.split_seed, val_frac=args.val_frac, test_frac=args.test_frac, folds=args.folds)
    if args.ray:
        from .training.trainer import init_ray

        init_ray(args.address)
    preprocess = PreprocessConfig(fs=args.fs, lowcut=args.lowcut, highcut=args.highcut, short_policy=args.short,
                                  segment_length=args.segment_length, stride=args.stride or None)
    prepare(args.source, records, args.out, preprocess, split, labels_path=args.labels, workers=args.workers,
            force=args.force, window_s=args.window, use_ray=args.ray, split_layout=args.split_layout)
    return 0


def cmd_models(args) -> str:
    from .models import benchmark_models, format_table

    return format_table(benchmark_models(batch_size=args.batch_size, length=args.length, iters=args.iters))


def cmd_train(args) -> dict:
    from .training.config import TrainConfig
    from .training.trainer import train_run

    overrides = _config_overrides(args)
    workers = overrides.get("num_workers", TrainConfig.num_workers)
    overrides.setdefault("cpus_per_worker", max(1, (os.cpu_count() or 1) // workers))  # every core it is given
    cfg = TrainConfig(**overrides)
    results = train_run(cfg, args.data, args.out, address=args.address, resume=args.resume, force=args.force)
    best = results["best_metrics"]
    return {"out": str(args.out), "epochs": results["epochs"], "best_epoch": results["best_epoch"],
            HEADLINE: best[HEADLINE], "val_auroc_macro": best["val_auroc_macro"], "seconds": results["seconds"]}


def cmd_sweep(args) -> int:
    from .data.prepare import ensure_prepared
    from .data.preprocess import PreprocessConfig
    from .tuning.search_space import load_spec
    from .tuning.sweep import print_sweep_summary, run_stage2, run_sweep

    spec = load_spec(args.spec, args.set)
    # --data, the spec's data.prepared, or one made now (cached by config hash) from the records folder
    prepared = args.data or spec.data.get("prepared")
    if not prepared:
        source = spec.data.get("source", DEFAULT_SOURCE)
        records = resolve_records_dir(source, args.data_dir or spec.data.get("data_dir"))
        prepared = ensure_prepared(source, records, PreprocessConfig(**spec.data.get("preprocess", {})))
    prepared = Path(prepared)
    where = dict(address=args.address, gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent)
    grid = run_sweep(spec, prepared, args.storage, resume=args.resume, **where)
    print_sweep_summary(grid, spec)
    if grid.errors:
        return 1
    if spec.stage2 is not None and not args.stage1_only:
        best = grid.get_best_result(metric=spec.metric, mode=spec.mode).config
        return run_stage2(spec, best, prepared, args.storage, resume=args.resume, **where)
    return 0


def _set_threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def _split_records(args) -> list[str] | None:
    """The records of ``--records-from-split`` in ``--prepared``'s saved split, or None (all)."""
    from .data.dataset import PreparedDataset

    if not args.records_from_split:
        return None
    if not args.prepared:
        raise ValueError("--records-from-split needs --prepared PREPARED (the dataset whose split to use)")
    return PreparedDataset(args.prepared).split(args.records_from_split)


def cmd_evaluate(args) -> str:
    from .artifacts import json_safe, log_stderr
    from .evaluate import evaluate_folder, log_test_scoring, write_predictions

    _set_threads(args.threads)
    records = _split_records(args)
    # stdout carries only the JSON, so download notes go to stderr
    data_dir = resolve_records_dir(args.source, args.data_dir, log=log_stderr)
    result, predictions = evaluate_folder(args.checkpoint, data_dir, labels=args.labels, source=args.source,
                                          batch_size=args.batch_size, records=records, window_s=args.window,
                                          return_predictions=True, reliability=args.reliability)
    if records is not None:
        result["records_from"] = f"{args.records_from_split} split of {Path(args.prepared).resolve()}"
    if args.predictions:
        write_predictions(args.predictions, predictions)
        result["predictions"] = str(args.predictions)
    if args.records_from_split == "test" and args.test_log:
        log_test_scoring(args.test_log, result, " ".join(["ecg-ray", *sys.argv[1:]]))
    return json.dumps(json_safe(result), indent=1, allow_nan=False)


def cmd_calibrate(args) -> dict:
    from .artifacts import log_stderr
    from .data.dataset import PreparedDataset
    from .training.calibration import calibrate_checkpoint
    from .training.checkpoint import checkpoint_file, load_checkpoint

    _set_threads(args.threads)
    file = checkpoint_file(args.checkpoint)
    cfg = load_checkpoint(file).get("config", {})
    _, val_ids = PreparedDataset(args.data).select(cfg.get("val_fold"), cfg.get("max_records"))
    summary = calibrate_checkpoint(file, args.data, val_ids, log=log_stderr)
    return {"checkpoint": str(file), **summary}


def cmd_predict(args) -> int:
    from .predict import error_line, format_table, load_predictor, predict_paths, time_predict

    _set_threads(args.threads)
    t0 = time.perf_counter()
    predictor = load_predictor(args.checkpoint, prefer=args.prefer)
    loaded = time.perf_counter() - t0
    rows, failed = [], 0
    for path, row, error in predict_paths(predictor, args.records, fs=args.fs, lead=args.lead):
        if error is not None:
            failed += 1
            print(f"ecg-ray: error: {error_line(path, error)}", file=sys.stderr, flush=True)
        elif args.format == "json":
            print(json.dumps(row), flush=True)
        else:
            rows.append(row)
    if rows:
        print(format_table(rows))
    if args.timing:
        print(f"predict: model loaded in {loaded * 1000:.0f} ms ({predictor.kind}); "
              f"{time_predict(predictor):.1f} ms per 30-s record at 300 Hz after loading", file=sys.stderr)
    return 2 if failed else 0


def cmd_export(args) -> dict:
    from .export import export_model

    return export_model(args.checkpoint, args.out, metrics_path=args.metrics,
                        verify_record=args.verify_record, verify_fs=args.fs)


def cmd_explain(args) -> int | dict:
    _set_threads(args.threads)
    if (args.record is None) == (args.data_dir is None):
        raise ValueError("explain: give either --record PATH (one figure) or --data-dir D --cases N (case page)")
    from .explain.cases import explain_cases, explain_one

    if args.record is not None:
        from .predict import error_line

        try:
            return explain_one(args.checkpoint, args.record, out=args.out, method=args.method, layer=args.layer,
                               cls=args.cls, fs=args.fs, label=args.label)
        except RecordError as err:
            print(f"ecg-ray: error: {error_line(str(args.record), err)}", file=sys.stderr)
            return 2
    records = _split_records(args)
    if records is not None and args.max_records:
        records = records[: args.max_records]
    return explain_cases(args.checkpoint, args.data_dir, args.out or Path("explain"), n=args.cases,
                         labels=args.labels, records=records, method=args.method, layer=args.layer,
                         deletion_records=args.deletion_records, seed=args.seed)


def _crossval_config(args, config):
    """``config`` (as ``--config`` takes it) to cross-validate or train, with the command's overrides."""
    from .tuning.experiment import train_config_from

    cfg, source = train_config_from(config)
    overrides = _config_overrides(args)
    if "max_records" not in overrides:  # cross-validation and the final model use every record unless told
        if cfg.max_records:
            print(f"note: the config caps training records at {cfg.max_records}; using all records "
                  "(pass --max-records to keep a cap)", file=sys.stderr)
        overrides["max_records"] = None
    return replace(cfg, **overrides), source


def cmd_crossval(args) -> dict:
    from .training.crossval import run_crossval

    cfg, source = _crossval_config(args, args.config)
    fold_ids = [int(k) for k in args.fold_ids.split(",")] if args.fold_ids else None
    summary = run_crossval(cfg, args.data, args.out, folds=args.folds, fold_ids=fold_ids,
                           exclude_test=args.exclude_test, config_source=source, address=args.address)
    print((Path(args.out) / "crossval.md").read_text(), file=sys.stderr)
    best = summary["best"]
    return {"out": str(args.out), "folds": [p["fold"] for p in summary["per_fold"]],
            f"{HEADLINE}_mean": best["mean"][HEADLINE], f"{HEADLINE}_sd": best["sd"][HEADLINE],
            f"{HEADLINE}_at_final_epochs": summary["common"]["mean"][HEADLINE], "best_epochs": summary["best_epochs"],
            "median_best_epoch": summary["median_best_epoch"], "final_epochs": summary["final_epochs"]}


def cmd_final(args) -> dict:
    from .training.crossval import final_epochs_from_crossval, run_final

    if args.config is None and args.from_crossval is None:
        raise ValueError("final needs --config, or --from-crossval DIR (whose config it then uses)")
    if args.epochs is None and args.from_crossval is None:
        raise ValueError("final needs --epochs N or --from-crossval DIR (its median best epoch)")
    epochs, config = args.epochs, args.config
    if args.from_crossval is not None:
        cv_epochs = final_epochs_from_crossval(args.from_crossval)  # read even with --epochs: a bad folder fails
        epochs = epochs or cv_epochs
        config = args.from_crossval if config is None else config
    cfg, source = _crossval_config(args, config)
    final = run_final(cfg, args.data, args.out, epochs, config_source=source, address=args.address)
    return {"out": str(args.out), "epochs": final["epochs"], "trained_on": final["trained_on"],
            "train_records": final["train_records"], "monitored_on": final["monitored_on"],
            "test_f1_cinc": final["test_metrics_last_epoch"].get("test_f1_cinc"), "note": final["note"]}


_FLAG_TYPES = {"int": int, "float": float, "str": str, "list": str, "dict": json.loads}


def _add_config_flags(p: argparse.ArgumentParser, note: str = "", skip: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per ``TrainConfig`` field (``--num-epochs`` for ``num_epochs``),
    typed and documented from the dataclass; an absent flag keeps the config's value."""
    from .training.config import TrainConfig

    group = p.add_argument_group("training config (TrainConfig fields; default: the config's value)"
                                 + (f"; {note}" if note else ""))
    defaults = TrainConfig()
    for f in (f for f in fields(TrainConfig) if f.name not in skip):
        kind = str(f.type).replace(" | None", "")
        typed = {"action": argparse.BooleanOptionalAction} if kind == "bool" else {"type": _FLAG_TYPES[kind]}
        group.add_argument("--" + f.name.replace("_", "-"), default=argparse.SUPPRESS, **typed,
                           help=f"{f.metadata.get('help', '')} (default: {getattr(defaults, f.name)})".strip())


def _config_overrides(args) -> dict:
    """The ``TrainConfig`` fields given on the command line."""
    from .training.config import TrainConfig

    return {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}


def _add_run_args(p: argparse.ArgumentParser, out_help: str = "output folder") -> None:
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder (ecg-ray prepare --out)")
    p.add_argument("--out", type=Path, required=True, help=out_help)
    p.add_argument("--address", help="Ray cluster address (default: local)")


def cmd_runs(args) -> str:
    from .tuning import analysis

    trials, _ = analysis.load_experiment(args.experiment)
    if args.action == "compare":
        runs = list(args.runs)
        if analysis.is_train_run(args.experiment) and args.experiment not in runs:
            runs.insert(0, str(args.experiment))
        return analysis.render(analysis.compare_runs(trials, runs), args.format, index=True)
    trials = analysis.filter_trials(trials, model=args.model, imbalance=args.imbalance, augment=args.augment,
                                    lr_min=args.lr_min, lr_max=args.lr_max, seed=args.seed, status=args.status)
    if trials.empty:
        raise ValueError("no trial matches the filters")
    if args.action == "list":
        columns = args.columns.split(",") if args.columns else None
        return analysis.render(analysis.list_table(trials, args.sort, columns), args.format)
    return analysis.format_best(analysis.best_record(trials, args.metric, args.mode, args.scope), args.format)


def cmd_ablation(args) -> str:
    from .tuning import effects

    trials, epochs = effects.load_tables(args.experiment, args.epochs)
    answer = effects.ablation_answer(trials, epochs, args.budget, args.metric, args.score,
                                     tuple(args.factors.split(",")), mode=args.mode, test=args.test)
    return effects.format_answer(answer, args.format)


def cmd_report(args) -> Path:
    from .report import build_report

    command = ["ecg-ray", "report", str(args.experiment), "--out", str(args.out)]
    for flag, value in (("--data", args.data), ("--data-dir", args.data_dir), ("--metric", args.metric),
                        ("--mode", args.mode), ("--record", args.record)):
        command += [flag, str(value)] if value is not None else []
    command += ["--no-eval"] if args.no_eval else []
    return build_report(args.experiment, args.out, metric=args.metric, mode=args.mode, prepared=args.data,
                        records_dir=args.data_dir, evaluate=not args.no_eval, record=args.record,
                        command=shlex.join(command))


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def cmd_bench(args) -> int:
    from .bench import BenchOptions, command_line, run_bench

    raw = {"prepare", "scale"} & set(args.sections)
    records = resolve_records_dir(DEFAULT_SOURCE, args.data_dir) if raw else None
    opts = BenchOptions(
        sections=args.sections, prepared=args.data, records_dir=records, out=args.out, repeats=args.repeats,
        warmup=args.warmup, batch_size=args.batch_size, feed_records=args.feed_records or None,
        train_records=args.train_records or None, models=args.models.split(",") if args.models else None,
        threads=args.threads or os.cpu_count() or 1, prepare_workers=args.prepare_workers,
        prepare_records=args.prepare_records, asha_spec=args.asha_spec, asha_set=args.asha_set, storage=args.storage)
    opts.command = command_line(opts, args.data_dir)
    json_path, md_path = run_bench(opts)
    print(md_path.read_text())
    print(f"wrote {md_path} and {json_path}", file=sys.stderr)
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI. ``command``: the subcommand about to be parsed; the ``TrainConfig`` flags
    (whose choices import torch and the model zoo, ~2 s) are then added to it alone, so
    ``prepare`` and the other commands start without them. None: every command, whole."""
    parser = argparse.ArgumentParser(prog="ecg-ray", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add_command(name: str, func, summary: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=summary)
        p.set_defaults(func=func)
        return p

    def config_flags(p: argparse.ArgumentParser, *args, **kwargs) -> None:
        if command is None or command == p.prog.split()[-1]:
            _add_config_flags(p, *args, **kwargs)

    p = add_command("download", cmd_download, "fetch PhysioNet 2017 and MIT-BIH (checksums verified)")
    p.add_argument("--data-dir", type=Path, help="data root (default: $ECG_RAY_DATA or cache)")
    p.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES))

    from .data.preprocess import PreprocessConfig

    pre = PreprocessConfig()
    p = add_command("prepare", cmd_prepare, "records → parquet segments + manifest (splits, counts)")
    _add_data_args(p)
    p.add_argument("--fs", type=float, default=pre.fs, help=f"sampling rate records are resampled to, Hz (default "
                   f"{pre.fs:g}); --segment-length and --stride count samples at this rate")
    p.add_argument("--segment-length", type=int, default=pre.segment_length,
                   help=f"model input window, samples at {pre.fs:g} Hz (default {pre.segment_length})")
    p.add_argument("--stride", type=int, default=pre.stride,
                   help=f"samples between inference window starts (default {pre.stride}; 0 = window length)")
    p.add_argument("--short", choices=("pad", "drop"), default=pre.short_policy, help="records shorter than a window")
    p.add_argument("--lowcut", type=float, default=pre.lowcut)
    p.add_argument("--highcut", type=float, default=pre.highcut)
    p.add_argument("--out", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--val-frac", type=float, default=0.15)
    p.add_argument("--test-frac", type=float, default=0.15)
    p.add_argument("--split-seed", type=int, default=42)
    p.add_argument("--workers", type=int, help="processes (default: all cores)")
    p.add_argument("--ray", action="store_true", help="fan the records out as Ray tasks (the cluster of --address / "
                   "$RAY_ADDRESS, else a local Ray) instead of a local process pool; same output")
    p.add_argument("--address", help="Ray cluster address for --ray")
    p.add_argument("--split-layout", action="store_true", help="store one folder per split x fold (signals as "
                   "float32 bytes) so a run streams only its own records: for corpora larger than the object store")
    p.add_argument("--force", action="store_true", help="redo even if the output is up to date")

    p = add_command("models", cmd_models, "the model zoo: parameters and CPU throughput")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--length", type=int, default=3000)
    p.add_argument("--iters", type=int, default=3)

    p = add_command("train", cmd_train, "train one config with Ray Train on a prepared dataset")
    _add_run_args(p, "run folder to write")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--force", action="store_true", help="replace a run already in --out")
    config_flags(p)

    p = add_command("sweep", cmd_sweep, "run a search space as an ASHA-pruned Ray Tune sweep")
    p.add_argument("spec", type=Path, help="search space YAML (search_spaces/*.yaml)")
    p.add_argument("--data", type=Path, help="prepared dataset (default: spec data.prepared, "
                                             "else prepared now from the records)")
    p.add_argument("--data-dir", type=Path, help="records folder or data root for that")
    p.add_argument("--storage", default=os.environ.get("ECG_RAY_STORAGE", "ray_results"),
                   help="local folder or URI (NFS path, s3://...) for results (default: ./ray_results)")
    p.add_argument("--resume", action="store_true", help="continue a killed sweep of the same name")
    p.add_argument("--gpus-per-trial", type=float, help="e.g. 0.25 packs 4 trials on a GPU")
    p.add_argument("--max-concurrent", type=int, help="max trials at once")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec value, e.g. --set data.max_records=200 --set scheduler.max_t=2")
    p.add_argument("--address", help="Ray cluster address (default: local or RAY_ADDRESS)")
    p.add_argument("--stage1-only", action="store_true",
                   help="stop after the ASHA search even if the spec has a stage2 section")

    p = add_command("calibrate", cmd_calibrate,
                    "fit a checkpoint's temperature on its validation records (stored in it)")
    _add_model_args(p, "model.pt or the run folder holding it")
    p.add_argument("--data", type=Path, required=True, help="the prepared dataset it was trained on")

    p = add_command("evaluate", cmd_evaluate,
                    "checkpoint → recording-level metrics (one JSON object) on a records folder")
    _add_model_args(p)
    _add_data_args(p)
    _add_split_args(p, "score only")
    p.add_argument("--predictions", type=Path, help="write record,label,probabilities CSV here")
    p.add_argument("--batch-size", type=int, default=256, help="segments per forward pass")
    p.add_argument("--reliability", type=Path,
                   help="write a reliability diagram (PNG): temperature 1 vs the model's own")
    p.add_argument("--test-log", type=Path, default=Path("results/test_split_log.csv"), help="every scoring of "
                   "the test split appends a line here (date, checkpoint, command, F1); '' to skip")

    p = add_command("predict", cmd_predict, "label and class probabilities of single records")
    p.add_argument("records", nargs="+", help=".mat/.hea (either, or the stem), WFDB record, or .npy (with --fs)")
    _add_model_args(p)
    p.add_argument("--fs", type=float, help="sampling rate of .npy input (Hz)")
    p.add_argument("--lead", help="WFDB lead name or index (default: MLII, else the first)")
    p.add_argument("--format", choices=("json", "table"), default="json", help="one JSON line per record, or a table")
    p.add_argument("--prefer", choices=("checkpoint", "torchscript"), default="checkpoint",
                   help="which model of an export archive to run")
    p.add_argument("--timing", action="store_true", help="also print ms per 30-s record on stderr")

    p = add_command("export", cmd_export,
                    "checkpoint → release archive (checkpoint, TorchScript, config, metrics, card)")
    p.add_argument("--checkpoint", type=Path, required=True, help="model.pt or its run folder")
    p.add_argument("--out", type=Path, required=True, help="model.tar.gz (archive) or a folder")
    p.add_argument("--metrics", type=Path, help="`ecg-ray evaluate` JSON to release with "
                                                "(default: the checkpoint's validation metrics)")
    p.add_argument("--verify-record", type=Path, help="real record to check TorchScript = eager on")
    p.add_argument("--fs", type=float, help="sampling rate if --verify-record is .npy")

    p = add_command("explain", cmd_explain, "Grad-CAM / attention on a record, or a case-analysis page + deletion test")
    _add_model_args(p, "model.pt, run folder or export archive")
    p.add_argument("--record", type=Path, help="one record (.mat/.hea, WFDB, .npy with --fs)")
    p.add_argument("--class", dest="cls", help="class to explain: N, A, O, ~ (default: predicted)")
    p.add_argument("--label", help="true label of --record, for the title")
    p.add_argument("--fs", type=float, help="sampling rate of .npy input (Hz)")
    p.add_argument("--method", choices=("gradcam", "attention"),
                   help="default: attention for attention models, else Grad-CAM")
    p.add_argument("--layer", help="Grad-CAM layer, e.g. frontend.blocks.1 (default: last conv block)")
    p.add_argument("--data-dir", type=Path, help="records folder for the case analysis")
    p.add_argument("--cases", type=int, default=3, help="per class: this many most confident right and wrong")
    p.add_argument("--labels", type=Path, help=LABELS_HELP)
    _add_split_args(p, "case analysis only on")
    p.add_argument("--max-records", type=int, help="cap on the split's records scored")
    p.add_argument("--deletion-records", type=int, default=30, help="correct records in the deletion test (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="figure (--record) or folder (--data-dir)")

    p = add_command("crossval", cmd_crossval, "k-fold cross-validation of one config (per-fold + mean ± sd)")
    p.add_argument("--config", required=True, help="run folder / results.json, YAML of TrainConfig fields, "
                                                   "checkpoint, or a sweep folder (its best trial)")
    _add_run_args(p)
    p.add_argument("--folds", type=int, default=5, help="folds (the saved ones if it matches their number)")
    p.add_argument("--fold-ids", help="comma list: run only these folds (e.g. 0,1)")
    p.add_argument("--exclude-test", action="store_true", help="make folds over train+val only, test untouched")
    config_flags(p, "--max-records: default all records, whatever the config's cap")

    p = add_command("final", cmd_final, "train the final model on train+val (test held out) for a fixed epoch count")
    p.add_argument("--config", help="as for crossval (default: the --from-crossval config)")
    _add_run_args(p)
    p.add_argument("--epochs", type=int, help="epoch count")
    p.add_argument("--from-crossval", type=Path, help="crossval folder: its median best epoch")
    config_flags(p, "--max-records: default all records, whatever the config's cap", skip=("num_epochs",))

    p = add_command("runs", cmd_runs, "read a sweep (or train run folders): list, best, compare")
    p.add_argument("experiment", help="experiment folder (<storage>/<name>, local or URI) or an ecg-ray train run")
    actions = p.add_subparsers(dest="action", required=True)
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--model", nargs="+")
    filters.add_argument("--imbalance", nargs="+")
    filters.add_argument("--augment", nargs="+", help="none, all, jitter, jitter+cutout, ...")
    filters.add_argument("--lr-min", type=float)
    filters.add_argument("--lr-max", type=float)
    filters.add_argument("--seed", nargs="+", type=int)
    filters.add_argument("--status", nargs="+", help="TERMINATED, ERROR, RUNNING, ...")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--format", choices=("table", "csv", "json", "markdown"), default="table")
    a = actions.add_parser("list", parents=[filters, output], help="one row per trial")
    a.add_argument("--sort", help=f"column or metric, best first (default: best_{HEADLINE})")
    a.add_argument("--columns", help="comma list of trials-table columns to show")
    a = actions.add_parser("best", parents=[filters, output], help="the trial Tune's get_best_result picks")
    a.add_argument("--metric", default=HEADLINE, help="f1_cinc, auroc, val_loss, any reported metric "
                                                          "(val_ prefix optional)")
    a.add_argument("--mode", choices=("max", "min"), help="default: min for losses, else max")
    a.add_argument("--scope", choices=("last", "best"), default="last",
                   help="rank on each trial's last reported value (Tune's default) or its best epoch")
    a = actions.add_parser("compare", parents=[output], help="runs side by side")
    a.add_argument("runs", nargs="+", help="trial ids (or unique parts of them) or run folders")

    p = add_command("ablation", cmd_ablation, "fixed-budget factorial answer (ANOVA, paired contrasts with CIs, Holm), "
                    "the per-rung ASHA reading, and the old best-of-trial table (labelled)")
    p.add_argument("experiment", help="experiment folder (local or URI), or a saved trials CSV "
                                      "(`runs list --format csv`, results/*/trials*.csv)")
    p.add_argument("--budget", type=int, help="epochs every compared trial must have run (default: the most any "
                                              "trial ran); trials with another budget are dropped and listed")
    p.add_argument("--metric", default=HEADLINE, help="metric (val_ prefix optional; default val F1(N,A,O))")
    p.add_argument("--score", choices=("last", "best"), default="last",
                   help="one rule for every trial: its value at the budget epoch (last) or its best epoch (best)")
    p.add_argument("--test", choices=("t", "wilcoxon"), default="t",
                   help="paired test of each level contrast: ttest_rel (default) or Wilcoxon signed-rank")
    p.add_argument("--epochs", help="epochs CSV for a trials CSV (default: the values the trials "
                                    "table reveals: final and best epoch)")
    p.add_argument("--mode", choices=("max", "min"))
    p.add_argument("--factors", default="model,imbalance,augment", help="comma list of factor columns")
    p.add_argument("--format", choices=("table", "json", "markdown"), default="table")

    p = add_command("report", cmd_report, "markdown report with figures and tables of a sweep or run")
    p.add_argument("experiment", help="experiment folder or ecg-ray train run folder")
    p.add_argument("--out", type=Path, required=True, help="report folder, e.g. results/<name>/")
    p.add_argument("--data", type=Path, help="prepared dataset (default: the one the sweep read)")
    p.add_argument("--data-dir", type=Path, help="records folder (default: the manifest's)")
    p.add_argument("--metric", help="ranking metric (default: the sweep's)")
    p.add_argument("--mode", choices=("max", "min"))
    p.add_argument("--record", help="record to draw in the data figures (default: a val AF record)")
    p.add_argument("--no-eval", action="store_true", help="skip running the best checkpoint on validation")

    from .bench.runner import SECTIONS, parse_sections

    p = add_command("bench", cmd_bench, "benchmarks: data feed, training throughput, prepare, ASHA savings, GPU")
    p.add_argument("--sections", type=parse_sections, default=list(SECTIONS),
                   help=f"comma list of {','.join(SECTIONS)} (default: all)")
    p.add_argument("--data", type=Path, help="prepared dataset (feed, train, asha, gpu)")
    p.add_argument("--data-dir", type=Path, help="raw records folder or data root (prepare)")
    p.add_argument("--out", type=Path, default=Path("results"),
                   help="folder for benchmarks.json + benchmarks.md (other sections already there are kept)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per figure (median, min, max)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs (epochs, passes) before the repeats")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--feed-records", type=int, default=0, help="cap on training records for feed (0: all)")
    p.add_argument("--train-records", type=int, default=200, help="cap on training records for train/gpu (0: all)")
    p.add_argument("--models", help="comma list of architectures (default: every registered one)")
    p.add_argument("--threads", type=int, help="torch threads = TorchTrainer worker CPUs (default: all cores)")
    p.add_argument("--prepare-workers", type=_int_list, default=[1, 2], help="process counts to time (default: 1,2)")
    p.add_argument("--prepare-records", type=int, help="time a balanced subset of this many records")
    p.add_argument("--asha-spec", type=Path, help="search space (default: search_spaces/bench_asha.yaml)")
    p.add_argument("--asha-set", action="append", default=[], metavar="KEY=VALUE", help="override the spec, e.g. "
                   "data.max_records=40 (as sweep --set)")
    p.add_argument("--storage", default="ray_results/bench", help="where the two sweeps' experiments go")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(next((a for a in argv if not a.startswith("-")), "")).parse_args(argv)
    try:
        result = args.func(args)
        if isinstance(result, int):
            return result
        print(json.dumps(result) if isinstance(result, dict) else result)
        return 0
    except (DataError, ValueError, FileNotFoundError, FileExistsError) as e:
        if os.environ.get("ECG_RAY_DEBUG"):
            raise
        print(f"ecg-ray: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
