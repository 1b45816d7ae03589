"""Error types raised by readers and preprocessing.

``RecordError`` means *this record* is unusable (it is skipped and counted in the manifest);
``DataError`` means the whole input is unusable (the command exits non-zero with the message).
"""


class DataError(Exception):
    """The input as a whole cannot be used (empty folder, no label file...)."""


class RecordError(Exception):
    """One record cannot be used; ``reason`` is a short, countable category."""

    def __init__(self, record: str, reason: str, detail: str = ""):
        self.record, self.reason, self.detail = record, reason, detail
        super().__init__(f"{record}: {reason}" + (f" ({detail})" if detail else ""))
