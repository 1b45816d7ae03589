"""Numbers of a benchmark: repeated timing, median/min/max summaries, ratios,
and the markdown tables they are shown in. Plain Python; no torch, no Ray."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence


def summarize(values: list[float]) -> dict:
    """``{"median", "min", "max", "n", "values"}`` of repeated measurements."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summarize: no measurements")
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values), "values": values}


def ratio(value: dict | float | None, reference: dict | float | None) -> float | None:
    """Median of ``value`` over median of ``reference`` (None when either is missing or 0)."""
    a, b = (x.get("median") if isinstance(x, dict) else x for x in (value, reference))
    return None if a is None or b is None or b == 0 else a / b


def timed(fn: Callable, repeats: int, warmup: int = 1, returned: list | None = None) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones; what
    each timed call returned is appended to ``returned``."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    returned = [] if returned is None else returned
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        returned.append(fn())
        seconds.append(time.perf_counter() - t0)
    return seconds


def rates(step: Callable[[], int], repeats: int, warmup: int = 1) -> list[float]:
    """Items per second of ``step()`` (which returns how many items it handled),
    ``repeats`` times after ``warmup`` untimed calls."""
    counts = []
    seconds = timed(step, repeats, warmup, counts)
    return [n / max(s, 1e-12) for n, s in zip(counts, seconds)]


def fmt(value, digits: int = 3) -> str:
    """A number for a table: thousands separators for big ones, ``—`` for none."""
    if value is None or value != value:
        return "—"
    if isinstance(value, str):
        return value
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def fmt_spread(s: dict, digits: int = 3) -> str:
    """``median M (min A, max B)`` of a summary."""
    return f"median {fmt(s['median'], digits)} (min {fmt(s['min'], digits)}, max {fmt(s['max'], digits)})"


def markdown_table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """A GitHub markdown table; ``align`` is one letter per column (``l``/``r``),
    default: first column left, the rest right. Cells go through :func:`fmt`."""
    align = align or "l" + "r" * (len(headers) - 1)
    if len(align) != len(headers):
        raise ValueError(f"markdown_table: {len(headers)} headers but {len(align)} alignments")
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"markdown_table: row {row!r} has {len(row)} cells, expected {len(headers)}")
    lines = [headers, ["---:" if a == "r" else ":---" for a in align], *([fmt(c) for c in row] for row in rows)]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def environment(env: dict | None) -> list[str]:
    """The lines that open a section run with ``$ECG_RAY_*`` knobs set (none without)."""
    return ["Environment: " + " ".join(f"`{k}={v}`" for k, v in env.items()), ""] if env else []


def section_body(table: str, notes: Sequence[str] = (), env: dict | None = None) -> str:
    """A section's body: its ``$ECG_RAY_*`` settings if any, the table, then the notes as bullets."""
    return "\n".join([*environment(env), table, *(f"- {n}" for n in notes)])


def summary_cells(s: dict | None) -> list:
    """``[median, min, max]`` of a summary (dashes when missing)."""
    return [None, None, None] if not s else [s["median"], s["min"], s["max"]]
