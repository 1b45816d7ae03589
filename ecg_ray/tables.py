"""The one table renderer: a DataFrame as a console table, markdown, CSV or JSON.

Every command that prints or writes a table (``runs``, ``ablation``, ``report``, ``crossval``, ``bench``)
goes through ``render`` so numbers look the same everywhere: floats to ``floatfmt``, tiny or huge ones
in ``.3g``, NaN/None blank, booleans ``yes``/blank.
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
    if not isinstance(v, (float, np.floating)):
        return str(v)
    if np.isnan(v):
        return ""
    return f"{v:.3g}" if v != 0 and not 1e-3 <= abs(v) < 1e6 else format(v, floatfmt)  # .3g: inf and -inf too


def to_markdown(df: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """A GitHub-flavoured markdown table (no extra dependency)."""
    numeric = [is_numeric_dtype(df[c]) and not is_bool_dtype(df[c]) for c in df.columns]
    lines = ["| " + " | ".join(str(c) for c in df.columns) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(fmt_value(v, floatfmt).replace("|", "\\|") for v in row) + " |"
              for row in df.itertuples(index=False)]
    return "\n".join(lines)


def to_text(df: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """A plain aligned console table."""
    cells = [[str(c) for c in df.columns]] + [[fmt_value(v, floatfmt) for v in row]
                                              for row in df.itertuples(index=False)]
    widths = [max(map(len, column)) for column in zip(*cells)]
    numeric = [is_numeric_dtype(df[c]) for c in df.columns]  # booleans too: "yes" right-aligned
    lines = ["  ".join(v.rjust(w) if num and k else v.ljust(w) for v, w, num in zip(row, widths, numeric)).rstrip()
             for k, row in enumerate(cells)]  # k = 0: the header, left-aligned
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def render(df: pd.DataFrame, fmt: str = "table", floatfmt: str = ".4f", index: bool = False) -> str:
    """``df`` as ``table`` (console), ``csv``, ``json`` (a list of records) or ``markdown``."""
    if fmt == "csv":
        return df.to_csv(index=index).rstrip("\n")
    frame = df.reset_index() if index else df
    if fmt == "table":
        return to_text(frame, floatfmt)
    if fmt == "markdown":
        return to_markdown(frame, floatfmt)
    if fmt == "json":
        return json.dumps(json.loads(frame.to_json(orient="records")), indent=1)
    raise ValueError(f"unknown format {fmt!r}; choose {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")
