"""ecg-ray: a Ray Tune ablation system for ECG rhythm classification.

This module owns the contracts every stage shares: the class order, the class
keys of metric names and the headline metric live in one place so nothing else
re-derives them.
"""

__version__ = "0.1.0"

#: Class order, everywhere (DESIGN.md): index 0..3.
CLASSES: tuple[str, ...] = ("N", "A", "O", "~")
CLASS_TO_INDEX: dict[str, int] = {c: i for i, c in enumerate(CLASSES)}
#: ``CLASSES`` as written in metric and probability keys (``~`` is ``noisy``): ``val_f1_noisy``, ``p_noisy``.
CLASS_KEYS: tuple[str, ...] = ("N", "A", "O", "noisy")
#: Classes whose F1 the challenge averages for its headline metric.
CINC_CLASSES: tuple[str, ...] = ("N", "A", "O")
#: The headline metric every run reports, ranks, checkpoints and selects on:
#: recording-level mean F1 of N, A, O on the validation records.
HEADLINE = "val_f1_cinc"
