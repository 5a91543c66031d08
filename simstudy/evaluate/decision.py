"""A decision rule a user can apply without knowing the truth.

A *setting* is one combination of model factors (``pi``, ``scale_sd``, ``location_sd``, and the
``method`` when the summary has several); a *truth* is one combination of truth factors
(``share_inconsistent``, ``slab_sd``); decisions are made separately for each combination of
the ``by`` factors (``n_groups``, ``group_size``, plus any other varying cell factor), i.e.
what a user knows about their data.

For each ``by`` combination (:func:`decision_table`):

* a setting is **admissible** when its P(at least one false flag) (``fwer``) is at most
  ``level`` (default 0.1) at *every* truth, the null truths (share 0) included (a truth where
  ``fwer`` is undefined, i.e. no consistent group, is skipped);
* admissible settings are **ranked by worst-case TPR** over the non-null truths (share > 0),
  ties broken by mean TPR, then by worst-case ``fwer``; rank 1 is the recommendation;
* the **regret** of a setting at a truth (:func:`regret_table`) is the best TPR among the
  admissible settings at that truth minus the setting's TPR (undefined at the null truths
  and when no setting is admissible); ``max_regret`` is its worst case over the truths.

Everything is a pure function of the per-cell summary (:func:`simstudy.evaluate.summarize`,
or :func:`simstudy.evaluate.methods.summarize_methods` with a ``method`` dim, or a pandas
frame with one row per cell) and returns tidy pandas frames. MCSEs are the summary's: the
regret's MCSE is the unpaired ``sqrt(se^2 + se_best^2)`` (0 for the best setting itself), an
upper bound of the paired one when the settings share data sets
(:mod:`simstudy.evaluate.paired` gives the paired MCSE from the store).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["TRUTH_FACTORS", "SETTING_FACTORS", "BY_FACTORS", "DecisionRoles", "decision_roles", "crosses_truth_and_priors",
           "regret_table", "decision_table"]

#: generator factors a user cannot know (the truth)
TRUTH_FACTORS: tuple[str, ...] = ("share_inconsistent", "slab_sd")
#: model factors a user chooses (the setting)
SETTING_FACTORS: tuple[str, ...] = ("pi", "scale_sd", "location_sd")
#: what a user knows about their data: one decision per combination
BY_FACTORS: tuple[str, ...] = ("n_groups", "group_size")
_NULL_FACTOR = "share_inconsistent"
_IDS = ("cell", "cell_id", "cell_label", "data_id")


@dataclass(frozen=True)
class DecisionRoles:
    truth: tuple[str, ...]
    settings: tuple[str, ...]
    by: tuple[str, ...]


def _frame(summary) -> tuple[pd.DataFrame, list[str]]:
    """(one row per cell [and method], the cell factor columns)."""
    if isinstance(summary, pd.DataFrame):
        df = summary.reset_index(drop=True).copy()
        return df, [c for c in df.columns if c in TRUTH_FACTORS + SETTING_FACTORS + BY_FACTORS or c == "method"]
    if not isinstance(summary, xr.Dataset):
        raise TypeError("summary must be an xarray.Dataset (simstudy.evaluate.summarize) or a pandas DataFrame")
    factors = [k for k, v in summary.coords.items() if v.dims == ("cell",) and k not in _IDS]
    df = summary.to_dataframe().reset_index()
    if "method" in summary.dims:
        factors.append("method")
    return df, factors


def _varies(df: pd.DataFrame, name: str) -> bool:
    return df[name].astype(str).nunique() > 1


def decision_roles(summary, truth=None, settings=None, by=None) -> DecisionRoles:
    """The factors of each role present in ``summary``: given ones are kept; by default
    truth = :data:`TRUTH_FACTORS`, settings = :data:`SETTING_FACTORS` (+ ``method`` when
    several), by = :data:`BY_FACTORS` plus every other varying cell factor."""
    df, factors = _frame(summary)
    truth = tuple(truth) if truth is not None else tuple(f for f in TRUTH_FACTORS if f in factors)
    if settings is None:
        settings = tuple(f for f in SETTING_FACTORS if f in factors)
        if "method" in factors and _varies(df, "method"):
            settings += ("method",)
    settings = tuple(settings)
    if by is None:
        by = tuple(f for f in BY_FACTORS if f in factors)
        by += tuple(f for f in factors if f not in truth + settings + by and f != "method" and _varies(df, f))
    by = tuple(by)
    for name in truth + settings + by:
        if name not in df.columns:
            raise ValueError(f"{name!r} is not a column of the summary")
    return DecisionRoles(truth, settings, by)


def crosses_truth_and_priors(summary) -> bool:
    """The design crosses a varying truth factor with a varying prior (model) factor: the
    decision rule applies (what ``simstudy report`` checks before its decision section)."""
    df, factors = _frame(summary)
    vt = [f for f in TRUTH_FACTORS if f in factors and _varies(df, f)]
    vs = [f for f in SETTING_FACTORS if f in factors and _varies(df, f)]
    return bool(vt and vs)


def _label(row, names, varying) -> str:
    shown = [n for n in names if n in varying] or list(names)
    parts = []
    for n in shown:
        v = row[n]
        parts.append(f"{n}={v:g}" if isinstance(v, (float, np.floating)) else f"{n}={v}")
    return ", ".join(parts) if parts else "(all)"


def _col(df: pd.DataFrame, name: str) -> np.ndarray:
    return np.asarray(df[name], dtype=float) if name in df.columns else np.full(len(df), np.nan)


def _prepared(summary, truth, settings, by, tpr: str, fwer: str):
    df, _ = _frame(summary)
    roles = decision_roles(summary, truth, settings, by)
    for m in (tpr, fwer):
        if m not in df.columns:
            raise ValueError(f"the summary has no {m!r}")
    keys = list(roles.by + roles.settings + roles.truth)
    if keys and df.duplicated(subset=keys).any():
        raise ValueError(f"several cells share the same {keys}: name the other varying factors in `by`")
    varying = {n for n in roles.truth + roles.settings if _varies(df, n)}
    df = df.copy()
    df["setting"] = [_label(r, roles.settings, varying) for _, r in df.iterrows()]
    df["truth"] = [_label(r, roles.truth, varying) for _, r in df.iterrows()]
    df["_tpr"], df["_tpr_mcse"] = _col(df, tpr), _col(df, f"{tpr}_mcse")
    df["_fwer"], df["_fwer_mcse"] = _col(df, fwer), _col(df, f"{fwer}_mcse")
    null = (np.asarray(df[_NULL_FACTOR], dtype=float) == 0) if _NULL_FACTOR in df.columns else np.zeros(len(df), bool)
    df["null"] = null
    return df, roles


def _groups(df: pd.DataFrame, by: tuple[str, ...]):
    if not by:
        yield (), df
        return
    for key, sub in df.groupby(list(by), sort=True, dropna=False):
        yield (key if isinstance(key, tuple) else (key,)), sub


def _admissible(sub: pd.DataFrame, level: float) -> dict[str, bool]:
    out = {}
    for s, rows in sub.groupby("setting", sort=False):
        fw = rows["_fwer"].to_numpy(float)
        fw = fw[np.isfinite(fw)]
        out[s] = bool(fw.size) and bool((fw <= level).all())
    return out


def regret_table(summary, level: float = 0.1, truth=None, settings=None, by=None, tpr: str = "tpr",
                 fwer: str = "fwer") -> pd.DataFrame:
    """One row per (``by``, setting, truth): the ``by``, setting and truth factor values,
    ``setting`` and ``truth`` labels, ``null`` (share 0), ``tpr``/``tpr_mcse``,
    ``fwer``/``fwer_mcse``, ``cell`` (the position along the summary's ``cell`` dim, for
    an xarray summary), ``admissible`` (the setting's, over every truth of its ``by``
    group), ``best_setting``/``best_tpr`` (the admissible setting with the highest TPR at this
    truth), ``regret`` = best_tpr - tpr and ``regret_mcse`` (unpaired; 0 for the best itself)."""
    df, roles = _prepared(summary, truth, settings, by, tpr, fwer)
    rows = []
    for _, sub in _groups(df, roles.by):
        adm = _admissible(sub, level)
        for _, at in sub.groupby("truth", sort=False):
            cand = at[[adm[s] for s in at["setting"]] & np.isfinite(at["_tpr"].to_numpy(float))]
            best = cand.loc[cand["_tpr"].idxmax()] if len(cand) and not at["null"].iloc[0] else None
            for _, r in at.iterrows():
                row = {n: r[n] for n in roles.by + roles.settings + roles.truth}
                if "cell" in r.index:  # the summary's cell position (xarray input)
                    row["cell"] = int(r["cell"])
                row.update({"setting": r["setting"], "truth": r["truth"], "null": bool(r["null"]),
                            "tpr": r["_tpr"], "tpr_mcse": r["_tpr_mcse"], "fwer": r["_fwer"],
                            "fwer_mcse": r["_fwer_mcse"], "admissible": adm[r["setting"]]})
                if best is None or not np.isfinite(r["_tpr"]):
                    row.update({"best_setting": None if best is None else best["setting"],
                                "best_tpr": np.nan if best is None else best["_tpr"],
                                "regret": np.nan, "regret_mcse": np.nan})
                else:
                    is_best = r["setting"] == best["setting"]
                    row.update({"best_setting": best["setting"], "best_tpr": best["_tpr"],
                                "regret": float(best["_tpr"] - r["_tpr"]),
                                "regret_mcse": 0.0 if is_best else float(math.hypot(r["_tpr_mcse"], best["_tpr_mcse"]))})
                rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs.update({"level": float(level), "by": list(roles.by), "settings": list(roles.settings),
                      "truth": list(roles.truth)})
    return out


def _worst(values: np.ndarray, mcse: np.ndarray, labels, pick) -> tuple[float, float, str | None]:
    ok = np.isfinite(values)
    if not ok.any():
        return np.nan, np.nan, None
    idx = np.flatnonzero(ok)
    i = idx[pick(values[ok])]
    return float(values[i]), float(mcse[i]), labels[i]


def decision_table(summary, level: float = 0.1, truth=None, settings=None, by=None, tpr: str = "tpr",
                   fwer: str = "fwer") -> pd.DataFrame:
    """One row per (``by``, setting), ranked within each ``by`` group: ``admissible``
    (``fwer <= level`` at every truth), ``rank`` (1 = recommended; missing for inadmissible
    settings), ``recommended``, ``worst_fwer``/``worst_fwer_mcse``/``worst_fwer_at`` (its
    largest P(≥1 false flag) and the truth where), ``worst_tpr``/``worst_tpr_mcse``/``worst_tpr_at``
    (smallest TPR over the non-null truths), ``mean_tpr``, ``max_regret``/``max_regret_mcse``/
    ``max_regret_at`` (:func:`regret_table`), ``n_truths``; ``level`` is recorded in
    ``df.attrs["level"]``. Admissible settings come first, by rank; then the others by worst
    ``fwer``."""
    df, roles = _prepared(summary, truth, settings, by, tpr, fwer)
    reg = regret_table(summary, level, truth, settings, by, tpr, fwer)
    out = []
    for key, sub in _groups(df, roles.by):
        adm = _admissible(sub, level)
        rsub = reg
        for n, v in zip(roles.by, key):
            rsub = rsub[rsub[n].astype(str) == str(v)]
        rows = []
        for s, at in sub.groupby("setting", sort=False):
            first = at.iloc[0]
            row = {n: first[n] for n in roles.by + roles.settings}
            row["setting"] = s
            row["admissible"] = adm[s]
            labels = at["truth"].tolist()
            row["worst_fwer"], row["worst_fwer_mcse"], row["worst_fwer_at"] = _worst(
                at["_fwer"].to_numpy(float), at["_fwer_mcse"].to_numpy(float), labels, np.argmax)
            nn = ~at["null"].to_numpy(bool)
            row["worst_tpr"], row["worst_tpr_mcse"], row["worst_tpr_at"] = _worst(
                np.where(nn, at["_tpr"].to_numpy(float), np.nan), at["_tpr_mcse"].to_numpy(float), labels, np.argmin)
            t = at["_tpr"].to_numpy(float)[nn]
            row["mean_tpr"] = float(np.nanmean(t)) if np.isfinite(t).any() else np.nan
            rg = rsub[rsub["setting"] == s]
            row["max_regret"], row["max_regret_mcse"], row["max_regret_at"] = _worst(
                rg["regret"].to_numpy(float), rg["regret_mcse"].to_numpy(float), rg["truth"].tolist(), np.argmax)
            row["n_truths"] = int(len(at))
            rows.append(row)
        g = pd.DataFrame(rows)
        g["_neg_worst"] = -g["worst_tpr"].fillna(-np.inf)
        g["_neg_mean"] = -g["mean_tpr"].fillna(-np.inf)
        g = g.sort_values(["admissible", "_neg_worst", "_neg_mean", "worst_fwer"],
                          ascending=[False, True, True, True], kind="stable")
        k = int(g["admissible"].sum())
        g["rank"] = pd.array(list(range(1, k + 1)) + [pd.NA] * (len(g) - k), dtype="Int64")
        g["recommended"] = g["rank"].eq(1).fillna(False).astype(bool)
        out.append(g.drop(columns=["_neg_worst", "_neg_mean"]))
    res = pd.concat(out, ignore_index=True) if out else pd.DataFrame()
    res.attrs.update({"level": float(level), "by": list(roles.by), "settings": list(roles.settings),
                      "truth": list(roles.truth)})
    return res
