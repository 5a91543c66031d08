"""CSV cells a spreadsheet would not run (CSV/formula injection).

The real-data commands write tables with the user's own labels (group labels, factor levels)
to CSV files people open in spreadsheets. A cell beginning with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return is read there as a formula (``=cmd|' /C calc'!A0``), so such text
cells get a leading single quote, the usual neutraliser (OWASP); plain numbers such as
``-1.5`` are left alone, and so are non-text columns. :func:`unescape_label` undoes it for
the files simstudy reads back (``groups.csv`` in ``simstudy hlm --fit``).
"""

from __future__ import annotations

import pandas as pd

__all__ = ["FORMULA_START", "escape_label", "unescape_label", "spreadsheet_safe"]

#: first characters that make a spreadsheet treat a cell as a formula
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip() == text and text.lower().lstrip("+-") not in ("inf", "infinity", "nan")


def _dangerous(text: str) -> bool:
    return text[:1] in FORMULA_START and not _is_number(text)


def escape_label(value):
    """``value`` with a leading ``'`` when it is text a spreadsheet would run (a run of quotes
    before such text gets one more, so that :func:`unescape_label` restores it exactly)."""
    if not isinstance(value, str):
        return value
    if _dangerous(value) or (value[:1] == "'" and _dangerous(value.lstrip("'"))):
        return "'" + value
    return value


def unescape_label(value):
    """The inverse of :func:`escape_label`."""
    if isinstance(value, str) and value[:1] == "'" and _dangerous(value.lstrip("'")):
        return value[1:]
    return value


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every text cell (columns, index and column names) escaped."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]) \
                or isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].map(escape_label).astype(object)
    if out.index.dtype == object or pd.api.types.is_string_dtype(out.index):
        out.index = out.index.map(escape_label)
    out.columns = [escape_label(c) for c in out.columns]
    return out
