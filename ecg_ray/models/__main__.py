"""``python -m ecg_ray.models``: table of every model's parameter count and
CPU forward+backward throughput (segments/s, train mode, default hparams)."""

from __future__ import annotations

import argparse

import torch

from . import benchmark_models, model_names


def format_table(rows: list[dict]) -> str:
    """One line per model: name, parameter count, segments/s and seconds per iteration."""
    header = f"{'model':<14} {'parameters':>11} {'segments/s':>11} {'s/iter':>8}"
    return "\n".join([header, *(f"{r['name']:<14} {r['parameters']:>11,} {r['segments_per_s']:>11.1f} "
                                 f"{r['seconds_per_iter']:>8.3f}" for r in rows)])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m ecg_ray.models", description=__doc__)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--length", type=int, default=1500, help="segment length in samples")
    ap.add_argument("--iters", type=int, default=3, help="timed iterations (after 1 warm-up)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--models", nargs="*", choices=model_names(), default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = benchmark_models(args.batch_size, args.length, args.iters, names=args.models)
    print(f"batch {args.batch_size}, length {args.length}, {args.iters} timed iterations, CPU")
    print(format_table(rows))


if __name__ == "__main__":
    main()
