"""``python -m ecg_ray.models``: table of every model's parameter count and
CPU forward+backward throughput (segments/s, train mode, default hparams)."""

from __future__ import annotations

import argparse

import torch

from . import benchmark_models, format_table, model_names


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
