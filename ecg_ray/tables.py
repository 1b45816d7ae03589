"""The one table renderer: a DataFrame as a console table, markdown, CSV or JSON.

Every command that prints or writes a table (``runs``, ``ablation``, ``report``,
``crossval``, ``bench``) goes through ``render`` so numbers look the same
everywhere: floats to ``floatfmt``, tiny or huge ones in ``.3g``, NaN/None blank,
booleans ``yes``/blank.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

FORMATS = ("table", "csv", "json", "markdown")


def fmt_value(v, floatfmt: str = ".4f") -> str:
    if v is None or v is pd.NA or v is pd.NaT:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else ""
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "" if np.isnan(v) else str(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.3g}"
        return format(v, floatfmt)
    return str(v)


def to_markdown(df: pd.DataFrame, floatfmt: str = ".4f", index: bool = False) -> str:
    """A GitHub-flavoured markdown table (no extra dependency)."""
    frame = df.reset_index() if index else df
    numeric = [is_numeric_dtype(frame[c]) and not is_bool_dtype(frame[c]) for c in frame.columns]
    lines = ["| " + " | ".join(str(c) for c in frame.columns) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(fmt_value(v, floatfmt).replace("|", "\\|") for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def to_text(df: pd.DataFrame, floatfmt: str = ".4f", index: bool = False) -> str:
    """A plain aligned console table."""
    frame = df.reset_index() if index else df
    cells = [[str(c) for c in frame.columns]] + [[fmt_value(v, floatfmt) for v in row]
                                                 for row in frame.itertuples(index=False)]
    widths = [max(map(len, column)) for column in zip(*cells)]
    numeric = [is_numeric_dtype(frame[c]) for c in frame.columns]  # booleans too: "yes" right-aligned
    lines = []
    for k, row in enumerate(cells):
        lines.append("  ".join(v.rjust(w) if num and k else v.ljust(w) for v, w, num in zip(row, widths, numeric))
                     .rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render(df: pd.DataFrame, fmt: str = "table", floatfmt: str = ".4f", index: bool = False) -> str:
    """``df`` as ``table`` (console), ``csv``, ``json`` (a list of records) or ``markdown``."""
    if fmt == "table":
        return to_text(df, floatfmt, index)
    if fmt == "markdown":
        return to_markdown(df, floatfmt, index)
    if fmt == "csv":
        return df.to_csv(index=index).rstrip("\n")
    if fmt == "json":
        frame = df.reset_index() if index else df
        return json.dumps(json.loads(frame.to_json(orient="records")), indent=1)
    raise ValueError(f"unknown format {fmt!r}; choose {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")
