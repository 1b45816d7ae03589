"""``ecg-ray`` entry point: parse arguments, call the stage, nothing else.

Every known failure (bad input, bad spec, missing file) ends as one line
``ecg-ray: error: ...`` on stderr and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .data.errors import DataError


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", choices=("cinc2017", "mitbih"), default="cinc2017")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="records folder, or a data root holding cinc2017/ and mitdb/ "
                        "(default: $ECG_RAY_DATA, else the download cache)")


def _add_preprocess_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--segment-length", type=int, default=1500, help="samples per segment at 300 Hz")
    p.add_argument("--stride", type=int, default=None, help="samples between segment starts (default: length)")
    p.add_argument("--short", choices=("pad", "drop"), default="pad", help="records shorter than a segment")
    p.add_argument("--lowcut", type=float, default=0.5)
    p.add_argument("--highcut", type=float, default=40.0)


def _preprocess_config(args):
    from .data.preprocess import PreprocessConfig

    return PreprocessConfig(lowcut=args.lowcut, highcut=args.highcut, segment_length=args.segment_length,
                            stride=args.stride, short_policy=args.short)


def cmd_download(args) -> int:
    from .data.download import data_root, download

    root = data_root(args.data_dir)
    download(root, sources=args.sources)
    print(root)
    return 0


def resolve_records_dir(source: str, data_dir: Path | None) -> Path:
    """The records folder for ``source``: given, from $ECG_RAY_DATA, or downloaded."""
    from .data.download import data_root, ensure_data

    return ensure_data(data_root(data_dir), source)


def cmd_prepare(args) -> int:
    from .data.prepare import SplitConfig, prepare

    records = resolve_records_dir(args.source, args.data_dir)
    split = SplitConfig(seed=args.split_seed, val_frac=args.val_frac, test_frac=args.test_frac, folds=args.folds)
    prepare(args.source, records, args.out, _preprocess_config(args), split, labels_path=args.labels,
            workers=args.workers, force=args.force, window_s=args.window)
    return 0


def cmd_models(args) -> int:
    from .models import benchmark_models

    rows = benchmark_models(batch_size=args.batch_size, length=args.length, iters=args.iters)
    print(f"{'model':<14}{'parameters':>12}{'segments/s':>12}")
    for r in rows:
        print(f"{r['name']:<14}{r['parameters']:>12,}{r['segments_per_s']:>12,.0f}")
    return 0


def cmd_train(args) -> int:
    from .training.config import TrainConfig
    from .training.trainer import train_run

    cfg = TrainConfig(
        model=args.model, model_params=json.loads(args.model_params), seed=args.seed, lr=args.lr,
        weight_decay=args.weight_decay, batch_size=args.batch_size, num_epochs=args.num_epochs,
        patience=args.patience, imbalance=args.imbalance, focal_gamma=args.focal_gamma, augment=args.augment,
        augment_p=args.augment_p, lstm_lr=args.lstm_lr, init_from=args.init_from, freeze=args.freeze,
        val_fold=args.val_fold, max_records=args.max_records, num_workers=args.num_workers,
        use_gpu=args.use_gpu, cpus_per_worker=args.cpus_per_worker, grad_clip=args.grad_clip,
    )
    results = train_run(cfg, args.data, args.out, address=args.address)
    best = results["best_metrics"]
    print(json.dumps({"out": str(args.out), "epochs": results["epochs"], "best_epoch": results["best_epoch"],
                      "val_f1_cinc": best["val_f1_cinc"], "val_auroc_macro": best["val_auroc_macro"],
                      "seconds": results["seconds"]}))
    return 0


def _prepared_for_spec(spec, data: Path | None, data_dir: Path | None) -> Path:
    """The prepared folder a sweep reads: --data, the spec's data.prepared, or
    one made now (cached by config hash) from the records folder."""
    from .data.prepare import ensure_prepared
    from .data.preprocess import PreprocessConfig

    prepared = data or spec.data.get("prepared")
    if prepared:
        return Path(prepared)
    source = spec.data.get("source", "cinc2017")
    records = resolve_records_dir(source, data_dir or spec.data.get("data_dir"))
    return ensure_prepared(source, records, PreprocessConfig(**spec.data.get("preprocess", {})))


def cmd_sweep(args) -> int:
    from .tuning.search_space import load_spec
    from .tuning.sweep import run_sweep

    spec = load_spec(args.spec, args.set)
    prepared = _prepared_for_spec(spec, args.data, args.data_dir)
    grid = run_sweep(spec, prepared, args.storage, resume=args.resume, address=args.address,
                     gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent)
    print_sweep_summary(grid, spec)
    return 0 if not grid.errors else 1


def print_sweep_summary(grid, spec) -> None:
    """The trial table (iterations show ASHA's early stops) and the best trial."""
    rows = []
    for result in grid:
        cfg = result.config or {}
        m = result.metrics or {}
        rows.append((cfg.get("model"), cfg.get("imbalance"), ",".join(cfg.get("augment") or []) or "none"
                     if isinstance(cfg.get("augment"), list) else cfg.get("augment"),
                     m.get("training_iteration", 0), m.get(spec.metric, float("nan")),
                     "error" if result.error else ""))
    print(f"{'model':<12}{'imbalance':<10}{'augment':<34}{'epochs':>7}{spec.metric:>14}")
    for r in sorted(rows, key=lambda r: -(r[4] if r[4] == r[4] else -1)):
        print(f"{r[0]!s:<12}{r[1]!s:<10}{r[2]!s:<34}{r[3]:>7}{r[4]:>14.4f} {r[5]}")
    max_t = max((r[3] for r in rows), default=0)
    stopped = sum(1 for r in rows if 0 < r[3] < max_t)
    print(f"{len(rows)} trials, {stopped} stopped early by {spec.scheduler.get('type', 'asha').upper()}, "
          f"{sum(r[3] for r in rows)} trial-epochs (exhaustive: {len(rows) * max_t})")
    try:
        best = grid.get_best_result(metric=spec.metric, mode=spec.mode)
        print(f"best trial: {best.path}\n  " + json.dumps(
            {k: best.config.get(k) for k in ("model", "imbalance", "augment", "lr", "seed")}) +
            f"\n  {spec.metric} = {best.metrics.get(spec.metric):.4f}")
    except RuntimeError as e:
        print(f"no best trial: {e}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecg-ray", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("download", help="fetch PhysioNet 2017 and MIT-BIH (checksums verified)")
    p.add_argument("--data-dir", type=Path, default=None, help="data root (default: $ECG_RAY_DATA or cache)")
    p.add_argument("--sources", nargs="+", choices=("cinc2017", "mitbih"), default=["cinc2017", "mitbih"])
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("prepare", help="records → parquet segments + manifest (splits, counts)")
    _add_data_args(p)
    _add_preprocess_args(p)
    p.add_argument("--out", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--labels", type=Path, default=None, help="label file (default: REFERENCE.csv beside records)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--val-frac", type=float, default=0.15)
    p.add_argument("--test-frac", type=float, default=0.15)
    p.add_argument("--split-seed", type=int, default=42)
    p.add_argument("--window", type=float, default=30.0, help="MIT-BIH window length (s)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--force", action="store_true", help="redo even if the output is up to date")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("models", help="the model zoo: parameters and CPU throughput")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--length", type=int, default=1500)
    p.add_argument("--iters", type=int, default=3)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("train", help="train one config with Ray Train on a prepared dataset")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder (ecg-ray prepare --out)")
    p.add_argument("--out", type=Path, required=True, help="run folder to write")
    p.add_argument("--model", default="cnn_only")
    p.add_argument("--model-params", default="{}", help="JSON dict of model hyper-parameters")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-epochs", type=int, default=20)
    p.add_argument("--patience", type=int, default=6, help="early stopping on val F1; 0 = off")
    p.add_argument("--imbalance", default="weighted", help="none | weighted | sampler | focal")
    p.add_argument("--focal-gamma", type=float, default=2.0)
    p.add_argument("--augment", default="none", help="comma list of jitter,scaling,time_warp,cutout | all | none")
    p.add_argument("--augment-p", type=float, default=0.5)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--lstm-lr", type=float, default=None, help="learning rate of the recurrent part")
    p.add_argument("--init-from", default=None, help="checkpoint whose front end initialises the model")
    p.add_argument("--freeze", choices=("frontend",), default=None)
    p.add_argument("--val-fold", "--folds", dest="val_fold", type=int, default=None,
                   help="hold out this fold (default: the saved train/val split)")
    p.add_argument("--max-records", type=int, default=None, help="cap on training records")
    p.add_argument("--num-workers", type=int, default=1)
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--use-gpu", action="store_true")
    p.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="run a search space as an ASHA-pruned Ray Tune sweep")
    p.add_argument("spec", type=Path, help="search space YAML (search_spaces/*.yaml)")
    p.add_argument("--data", type=Path, default=None, help="prepared dataset (default: spec data.prepared, "
                                                            "else prepared now from the records)")
    p.add_argument("--data-dir", type=Path, default=None, help="records folder or data root for that")
    p.add_argument("--storage", default=os.environ.get("ECG_RAY_STORAGE", "ray_results"),
                   help="local folder or URI (NFS path, s3://...) for results (default: ./ray_results)")
    p.add_argument("--resume", action="store_true", help="continue a killed sweep of the same name")
    p.add_argument("--gpus-per-trial", type=float, default=None, help="e.g. 0.25 packs 4 trials on a GPU")
    p.add_argument("--max-concurrent", type=int, default=None, help="max trials at once")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec value, e.g. --set data.max_records=200 --set scheduler.max_t=2")
    p.add_argument("--address", default=None, help="Ray cluster address (default: local or RAY_ADDRESS)")
    p.set_defaults(func=cmd_sweep)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataError, ValueError, FileNotFoundError) as e:
        if os.environ.get("ECG_RAY_DEBUG"):
            raise
        print(f"ecg-ray: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
