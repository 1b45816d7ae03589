"""``ecg-ray bench``: the project's benchmarks, each section in its own module.

- ``feed``: segments/s a training loop receives (numpy, DataLoader, Ray Data
  streaming / materialized, the sweep's TorchTrainer shard), no model;
- ``train``: forward+backward segments/s per architecture, TorchTrainer vs a
  bare torch loop on the same batches (Ray Train's overhead);
- ``prepare``: wall time and records/s of ``ecg-ray prepare`` per process count;
- ``asha``: the real sweep with ASHA vs exhaustive (FIFO): trial-epochs, wall
  time, best config and F1;
- ``gpu``: ``train`` on a CUDA device, skipped without one.

``runner`` orders them and writes ``benchmarks.json`` + ``benchmarks.md``;
``stats`` holds the median/min/max and table helpers. Ray is imported only by
the parts that fan work out, so the bare-torch parts run where only torch,
numpy and pyarrow are installed.
"""

from .runner import SECTIONS, BenchOptions, command_line, parse_sections, render_document, run_bench

__all__ = ["SECTIONS", "BenchOptions", "command_line", "parse_sections", "render_document", "run_bench"]
