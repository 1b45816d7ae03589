"""ecg-ray: a Ray Tune ablation system for ECG rhythm classification.

This module owns the contracts every stage shares: the class order and the
data-location rules live in one place so nothing else re-derives them.
"""

__version__ = "0.1.0"

#: Class order, everywhere (DESIGN.md): index 0..3.
CLASSES: tuple[str, ...] = ("N", "A", "O", "~")
CLASS_TO_INDEX: dict[str, int] = {c: i for i, c in enumerate(CLASSES)}
#: Classes whose F1 the challenge averages for its headline metric.
CINC_CLASSES: tuple[str, ...] = ("N", "A", "O")
