"""Datasets shipped with simstudy.

``saeb.csv``: a sample of the 2021 Brazilian Basic Education Evaluation System (Saeb;
Inep open microdata), Rio de Janeiro, 11th/12th grade mathematics, as distributed in the
R package ivd (data set ``saeb``). See ``saeb.md`` next to the CSV for the source note,
the column meanings and the three published SS-MELSM models fitted to it.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Literal

import pandas as pd

__all__ = ["load_saeb", "add_saeb_predictors", "dataset_path", "DATASETS", "SAEB_COLUMNS"]

SAEB_COLUMNS = ("school_id", "public", "student_ses", "math_proficiency", "location")

#: shipped data sets by name: file name and a one-line description
DATASETS = {"saeb": ("saeb.csv", "Saeb 2021 sample (ivd): 11,386 students in 160 schools; see saeb.md")}


def dataset_path(name: str):
    """The path of a shipped data set's CSV (``simstudy fit saeb ...`` reads it; ``simstudy datasets``
    prints it). Raises ``KeyError`` for an unknown name."""
    from pathlib import Path

    if name not in DATASETS:
        raise KeyError(f"no shipped data set {name!r}; shipped: {', '.join(DATASETS)}")
    return Path(str(files(__name__).joinpath(DATASETS[name][0])))


def load_saeb() -> pd.DataFrame:
    """The Saeb sample as a DataFrame (see ``simstudy/datasets/saeb.md``).

    11,386 students in 160 schools (``school_id`` 1..160, rows sorted by school); columns
    ``school_id``, ``public`` (1 public / 0 private), ``student_ses``, ``math_proficiency``
    (standardised mathematics score) and ``location`` (1 urban / 2 rural). School sizes range
    from 1 (school 80) to 493 (school 61). No values are missing.
    """
    with files(__name__).joinpath("saeb.csv").open("r", encoding="utf-8") as fh:
        df = pd.read_csv(fh)
    missing = [c for c in SAEB_COLUMNS if c not in df.columns]
    if missing:  # pragma: no cover - guards a damaged package install
        raise RuntimeError(f"saeb.csv lacks columns {missing}; the packaged file is damaged")
    return df


def add_saeb_predictors(
    df: pd.DataFrame,
    *,
    group: str = "school_id",
    ses: str = "student_ses",
    grand_mean: Literal["schools", "students"] = "schools",
    between: str = "school_ses",
) -> pd.DataFrame:
    """A copy of ``df`` with the within/between split of SES used by Models 2 and 3 in ``saeb.md``.

    * ``school_ses``: the school mean of ``student_ses``, grand-mean centred. With
      ``grand_mean="schools"`` (default) the grand mean is the unweighted mean of the school
      means (each school counts once), so ``school_ses`` averages 0 across schools. With
      ``grand_mean="students"`` it is the mean over students of their school's mean (each
      school weighted by its size), so ``school_ses`` averages 0 across students; this is what
      ivd's README does (``scale(saeb$school_ses, scale = FALSE)`` after joining the school
      means onto the students). The two differ by a constant, which moves only the intercept
      and the ``student_ses`` main effect (through the interaction), not the fit.
    * ``student_ses``: replaced by the student's deviation from their school mean (centred
      within school, so it averages 0 in every school);
    * ``student_ses_raw``: the original ``student_ses``.

    ``group``, ``ses`` and ``between`` name the columns, so the same arithmetic splits any
    column of any grouped data (``simstudy fit --within-between COLUMN:NEW``).
    """
    if grand_mean not in ("schools", "students"):
        raise ValueError(f"grand_mean must be 'schools' or 'students', not {grand_mean!r}")
    for col in (group, ses):
        if col not in df.columns:
            raise KeyError(f"column {col!r} not in the data (columns: {list(df.columns)})")
    out = df.copy()
    raw = out[ses].astype(float)
    school_mean = raw.groupby(out[group]).transform("mean")
    if grand_mean == "schools":
        centre = raw.groupby(out[group]).mean().mean()
    else:
        centre = school_mean.mean()
    out[f"{ses}_raw"] = raw
    out[between] = school_mean - centre
    out[ses] = raw - school_mean
    return out
