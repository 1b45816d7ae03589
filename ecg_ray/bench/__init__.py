"""``ecg-ray bench``: the project's benchmarks, each section in its own module.

- ``feed``: training crops/s a training loop receives (in-memory records, DataLoader, Ray Data streaming /
  materialized, the sweep's TorchTrainer shard), no model;
- ``train``: forward+backward crops/s per architecture, TorchTrainer vs a bare torch loop on the same crops, in
  interleaved rounds (Ray Train's overhead);
- ``prepare``: wall time and records/s of ``ecg-ray prepare`` per process count;
- ``asha``: the real sweep with ASHA vs exhaustive (FIFO): trial-epochs, wall time, best config and F1;
- ``gpu``: ``train`` on a CUDA device, skipped without one;
- ``scale``: prepare and the feed at 1×/4×/10× the records, long records;
- ``startup``: the fixed cost of a Ray Train run and of a Tune trial;
- ``shuffle``: training loss and F1 with the feed's local crop shuffle vs a full shuffle.

``runner`` orders them and writes ``benchmarks.json`` + ``benchmarks.md``; ``stats`` holds the median/min/max and
table helpers. Ray is imported only by the parts that fan work out, so the bare-torch parts run where only torch,
numpy, pyarrow and scikit-learn are installed.
"""

from .runner import SECTIONS, BenchOptions, command_line, parse_sections, render_document, run_bench

__all__ = ["SECTIONS", "BenchOptions", "command_line", "parse_sections", "render_document", "run_bench"]
