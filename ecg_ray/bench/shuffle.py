"""Section ``shuffle``: does the feed's local shuffle cost training quality? (issue #14)

The sweep's feed never shuffles the whole training set: it reads records in stored order, a chunk at a time, and
mixes only the crops of about ``shuffle_buffer`` records (``feed.CropShuffleBuffer``). This section trains the
same model from the same initial weights on the same records, with the same number of steps, two ways per seed:

- **stored order**: the records as a shard gives them (the product's feed);
- **full shuffle**: the records permuted globally every epoch, then the same crop buffer (what a perfect
  shuffle would give);

and compares the per-epoch training loss and, at the end, the validation record-level NLL and F1(N,A,O),
paired by seed. On fewer records than the full training split the chunk and the buffer shrink in proportion
(``scaled_window``), so the buffer spans the same share of the records as in a full run (1,024 of 5,268: about
a fifth); otherwise one chunk would hold every record and both arms would be the same. No Ray: both arms run
the worker's own step (``step.train_step``) on records in memory, one process, ``--threads`` torch threads.
``--repeats`` seeds, ``$ECG_RAY_SHUFFLE_EPOCHS`` epochs (default 6), ``--models``' first model (default
``cnn_only``), ``--train-records`` records.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .. import HEADLINE
from ..data import store
from ..data.dataset import PreparedDataset
from ..models import batched_logits
from ..training.config import TrainConfig
from ..training.feed import RECORDS_PER_CHUNK
from ..training.metrics import score_records
from . import stats
from .arrays import load_training_records
from .machine import env_option, env_settings
from .stats import fmt, fmt_spread, markdown_table, section_body
from .train import train_epochs

ARMS = ("stored", "shuffled")
#: The full training split of PhysioNet 2017 (records), which the feed's chunk and buffer sizes meet.
FULL_SPLIT = 5268


def scaled_window(n_records: int) -> int:
    """Records per chunk and per shuffle buffer that span the same share of ``n_records``
    as ``feed.RECORDS_PER_CHUNK`` does of the full split."""
    return max(1, min(RECORDS_PER_CHUNK, round(RECORDS_PER_CHUNK * n_records / FULL_SPLIT)))


def _validation(prepared, max_records):
    """The run's validation records: ``(labels, windows, record of each window)``."""
    _, val_ids = PreparedDataset(prepared).select(None, max_records)
    return store.record_windows(prepared, val_ids, store.preprocess_config(prepared))[1:]


def train_arm(cfg, data, shard, val, epochs: int, window: int) -> dict:
    """Train ``cfg.model`` for ``epochs`` on ``shard``: per-epoch loss, final validation F1."""
    t0 = time.perf_counter()
    model, log = train_epochs(cfg, data, shard, epochs, shuffle_buffer=window, records_per_chunk=window)
    y, windows, codes = val
    model.eval()
    metrics = score_records(y, batched_logits(model, windows, 512, torch.device("cpu")), codes, cfg.aggregate)
    return {"train_loss": [total / seen for seen, total, _ in log],  # loss: summed over each batch
            "val_f1": metrics[HEADLINE], "val_loss": metrics["val_loss"],
            "seconds": round(time.perf_counter() - t0, 1)}


def run(opts) -> dict:
    torch.set_num_threads(opts.threads)
    model = (opts.models or ["cnn_only"])[0]
    data = load_training_records(opts.prepared, opts.train_records)
    val = _validation(opts.prepared, opts.train_records)
    epochs = env_option("ECG_RAY_SHUFFLE_EPOCHS", 6, int)
    runs, window = {arm: [] for arm in ARMS}, scaled_window(len(data.labels))
    for seed in range(opts.repeats):
        cfg = TrainConfig(model=model, seed=seed, batch_size=opts.batch_size, augment=[], num_epochs=epochs,
                          max_records=opts.train_records)
        for arm in ARMS:
            shard = data.shard(None if arm == "stored" else seed)
            print(f"bench shuffle: {model} seed {seed} {arm} …", flush=True)
            runs[arm].append(train_arm(cfg, data, shard, val, epochs, window))
    deltas = [s["val_f1"] - f["val_f1"] for s, f in zip(runs["stored"], runs["shuffled"])]
    loss_deltas = [s["val_loss"] - f["val_loss"] for s, f in zip(runs["stored"], runs["shuffled"])]
    notes = [f"{model}, {epochs} epochs, {data.describe()}, {len(val[0])} validation records; "
             f"{opts.repeats} seeds, {opts.threads} torch thread(s); chunks of {window} records and a crop "
             f"buffer of {window} records' crops ({window / len(data.labels):.0%} of the records; a full run: "
             f"{TrainConfig().shuffle_buffer} of {FULL_SPLIT}); the recipe's defaults otherwise, no augmentation"]
    return {"model": model, "epochs": epochs, "runs": runs, "delta_f1": stats.summarize(deltas),
            "delta_val_loss": stats.summarize(loss_deltas), "notes": notes,
            "env": env_settings("ECG_RAY_SHUFFLE_")}


def render(result: dict, context: dict) -> str:
    runs, epochs = result["runs"], result["epochs"]
    head = ["arm", *[f"loss ep {e + 1}" for e in range(epochs)], "val loss (mean)", "val F1(N,A,O) (mean)",
            "F1 per seed"]
    rows = []
    for arm in ARMS:
        curves = np.array([r["train_loss"] for r in runs[arm]])
        f1 = [r["val_f1"] for r in runs[arm]]
        val_loss = [r.get("val_loss") for r in runs[arm]]
        rows.append([arm, *curves.mean(0), np.mean(val_loss) if None not in val_loss else None, np.mean(f1),
                     ", ".join(map(fmt, f1))])
    notes = [f"ΔF1 stored − shuffled, paired by seed: {fmt_spread(result['delta_f1'])}; training loss is the mean "
             "over seeds"]
    if "delta_val_loss" in result:
        notes.append("Δ validation loss (record-level NLL) stored − shuffled, paired by seed: "
                     + fmt_spread(result["delta_val_loss"]))
    return section_body(markdown_table(head, rows), notes + result.get("notes", []), result.get("env"))
