"""The two-stage HLM comparator on one real dataset, beside a saved SS-MELSM fit.

:func:`hlm_groups` runs :func:`simstudy.methods.hlm.hlm` on the dataset of the formulas and
tabulates, per group, ``n``, the residual SD, ``d = log s + 1/(2 df)``, ``Z`` and the three
flag rules (groups with ``n < 2`` have no Z and are never flagged). :func:`join_fit` adds the
PIPs of a fit directory (``simstudy fit --out``); :func:`agreement` counts groups flagged by
both methods, by one only, or by neither; :func:`plot_pip_vs_z` draws PIP against Z with the
flagged regions shaded. ``simstudy hlm`` wires them together.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from rich.markup import escape

__all__ = ["hlm_groups", "join_fit", "agreement", "plot_pip_vs_z", "hlm_command"]

AGREEMENT = ("both", "SS-MELSM only", "HLM only", "neither")
#: the flag columns of the groups table, one per HLM rule; ``hlm_qq`` (the rule that reproduces
#: the published HLM) first: the default of the agreement table and the figure
RULES = ("hlm_qq", "hlm_z", "hlm_bh", "hlm")
#: what each rule column means, in the words the output and the figure use
RULE_LABELS = {
    "hlm_qq": "QQ envelope around the quartile line, the published HLM",
    "hlm_z": "|Z| > 1.96",
    "hlm_bh": "Benjamini-Hochberg 5%",
    "hlm": "identity-line envelope",
}


def hlm_groups(mdata, seed: int = 0):
    """``(table, result)``: one row per group (``group, n, hlm_sd, hlm_d, z`` and one flag column per
    rule, named as the rule: ``hlm, hlm_qq, hlm_z, hlm_bh``) and the :class:`~simstudy.methods.hlm.HLMResult`.
    The grouping column is ``group`` here; :func:`hlm_command` writes it under the data's own name."""
    from ..methods.hlm import hlm

    res = hlm(mdata, seed)
    table = pd.DataFrame({
        "group": mdata.group_labels,
        "n": res.n.astype(int),
        "hlm_sd": res.s,
        "hlm_d": res.d,
        "z": res.z,  # the Z of the group's log residual SD (the rule hlm_z flags |z| > 1.96)
        "hlm": res.flags["hlm"],
        "hlm_qq": res.flags["hlm_qq"],
        "hlm_z": res.flags["hlm_z"],
        "hlm_bh": res.flags["hlm_bh"],
    })
    return table, res


def join_fit(table: pd.DataFrame, groups_csv, threshold: float = 0.75) -> pd.DataFrame:
    """``table`` with the fit's ``pip`` and ``ss_melsm`` (PIP >= threshold) by group label."""
    from .csvsafe import unescape_label

    fit = pd.read_csv(groups_csv)
    if "group" not in fit.columns and len(fit.columns):  # groups.csv names it as the data do (e.g. school_id)
        fit = fit.rename(columns={fit.columns[0]: "group"})
    if "pip" not in fit.columns:
        raise ValueError(f"{groups_csv}: no 'pip' column (one scale random effect is needed)")
    fit = fit[["group", "pip"]].assign(group=lambda f: f["group"].map(unescape_label).astype(str))
    out = table.assign(group=table["group"].astype(str)).merge(fit, on="group", how="left", validate="1:1")
    if out["pip"].isna().any():
        missing = out.loc[out["pip"].isna(), "group"].head(5).tolist()
        raise ValueError(f"groups {missing} of the data are not in {groups_csv}; fit the same data and formulas")
    out["ss_melsm"] = out["pip"] >= threshold
    return out


def agreement(table: pd.DataFrame, rule: str = "hlm_qq") -> pd.DataFrame:
    """Counts of groups flagged by both, the SS-MELSM only, the HLM (``rule`` column) only, neither."""
    a, b = table["ss_melsm"].astype(bool), table[rule].astype(bool)
    counts = [int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum()), int((~a & ~b).sum())]
    return pd.DataFrame({"agreement": AGREEMENT, "groups": counts})


def plot_pip_vs_z(table: pd.DataFrame, threshold: float = 0.75, z_crit: float = 1.959963984540054,
                  rule: str = "hlm_qq"):
    """PIP (y) against the HLM's Z (x) per group; shaded: PIP >= threshold (SS-MELSM flags) and
    |Z| > z_crit (the |Z| rule); points marked by ``rule``'s flag (default ``hlm_qq``, the QQ
    envelope around the quartile line that reproduces the published HLM; ``hlm`` is labelled
    as the identity-line envelope it is)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    # "z" (tables before issue 23 named it "hlm_z", now the |Z| rule's flag column)
    z = table["z" if "z" in table else "hlm_z"].to_numpy(float)
    pip = table["pip"].to_numpy(float)
    lim = max(3.0, float(np.nanmax(np.abs(z))) * 1.05 if np.isfinite(z).any() else 3.0)
    ax.axhspan(threshold, 1.02, color="tab:red", alpha=0.08, lw=0, label=f"SS-MELSM flags (PIP ≥ {threshold:g})")
    ax.axvspan(-lim, -z_crit, color="tab:blue", alpha=0.08, lw=0, label="|Z| > 1.96")
    ax.axvspan(z_crit, lim, color="tab:blue", alpha=0.08, lw=0)
    env = table[rule].astype(bool).to_numpy()
    what = RULE_LABELS.get(rule, rule)
    ax.scatter(z[~env], pip[~env], s=12, color="0.4", alpha=0.7, label=f"not flagged by {rule} ({what})")
    ax.scatter(z[env], pip[env], s=22, color="tab:blue", marker="D", label=f"HLM flag: {rule} ({what})")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("two-stage HLM: Z of the group's log residual SD")
    ax.set_ylabel("SS-MELSM: PIP")
    fig.legend(loc="outside lower center", ncol=2, frameon=False, fontsize="small")
    return fig


def hlm_warnings(mdata, caught) -> list[str]:
    """What ``simstudy hlm`` says about the warnings raised while building the dataset and
    running the HLM: the groups without a Z (single observations, a constant response) in the
    HLM's own terms, other :class:`UserWarning` messages once each on one line; numerical
    RuntimeWarnings (log 0 of a constant group, ...) are the same facts and are dropped."""
    from ..model.data import ConstantGroupWarning

    lines = []
    singles = int(np.sum(mdata.group_sizes == 1))
    if singles:
        lines.append(f"{singles} group(s) have a single observation: no residual SD, so no Z, and never flagged "
                     "by the HLM")
    constant = mdata.constant_groups()
    if len(constant):
        shown = ", ".join(str(g) for g in constant[:5]) + (f" and {len(constant) - 5} more" if len(constant) > 5 else "")
        lines.append(f"{len(constant)} group(s) have the same {mdata.response!r} in every observation ({shown}): "
                     "residual SD 0, so no Z, and never flagged by the HLM; check those values")
    for w in caught:
        if not issubclass(w.category, UserWarning) or issubclass(w.category, ConstantGroupWarning):
            continue
        text = " ".join(str(w.message).split())
        if "single observation" in text or text in lines:
            continue
        lines.append(text)
    return lines


def hlm_command(data, *, location: str, scale: str, fit_dir=None, threshold: float = 0.75, seed: int = 0,
                out=None, dropna: bool = False, console=None) -> pd.DataFrame:
    """``simstudy hlm``: the HLM per group of a CSV (formulas as ``simstudy fit``); with
    ``fit_dir`` the fit's PIPs beside it, the agreement tables and (with ``out``) the figure."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..model.data import DataError
    from .commands import FitInputError, _fail, read_csv_checked
    from .formula import FormulaError, melsm_data_from_formulas

    console = console or Console()
    try:
        if fit_dir is not None and not (Path(fit_dir) / "groups.csv").is_file():
            raise FitInputError(f"--fit {fit_dir}: no groups.csv; give a directory written by `simstudy fit --out`")
        # warnings become one clean line each (below), never Python's file:line dump
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mdata = melsm_data_from_formulas(read_csv_checked(data), location, scale, dropna=dropna)
            table, res = hlm_groups(mdata, seed)
        if fit_dir is not None:
            table = join_fit(table, Path(fit_dir) / "groups.csv", threshold)
    except (FitInputError, FormulaError, DataError, ValueError) as exc:
        _fail(str(exc))
    for line in hlm_warnings(mdata, caught):
        console.print(f"[yellow]warning:[/yellow] {escape(line)}", highlight=False, soft_wrap=True)
    console.print(f"two-stage HLM: {mdata.n_groups} groups, {int(np.isfinite(res.z).sum())} with a Z "
                  f"(n >= 2); meta-analysis tau^2 = {res.tau2:.4g}; homogeneity H = {res.H:.1f} "
                  f"on {res.H_df} df, p = {res.H_p:.3g}", highlight=False)
    flagged = table[table[list(RULES)].any(axis=1) | table.get("ss_melsm", False)]
    shown = [c for c in ("group", "n", "z", *RULES, "pip", "ss_melsm") if c in flagged]
    flagged = flagged[shown]
    t = Table(title="groups flagged by any rule (all columns: --out DIR/hlm_groups.csv)")
    for c in flagged.columns:
        t.add_column(c, justify="left" if c == "group" else "right")
    for _, r in flagged.sort_values("z", key=np.abs, ascending=False).iterrows():
        t.add_row(*[f"{v:.3f}" if isinstance(v, float) else escape(str(v)) for v in r.tolist()])  # labels: not markup
    console.print(t)
    if "ss_melsm" in table:
        for rule in RULES:
            agr = agreement(table, rule)
            console.print(f"agreement with {rule} ({RULE_LABELS[rule]}): " + ", ".join(f"{a} {n}" for a, n in agr.itertuples(index=False)),
                          highlight=False)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        from .csvsafe import spreadsheet_safe  # group labels a spreadsheet would run get a leading quote

        name = str(mdata.group_name or "group")  # the data's own name for the grouping column
        written = table if name in table.columns else table.rename(columns={"group": name})
        spreadsheet_safe(written).to_csv(out / "hlm_groups.csv", index=False)
        if "ss_melsm" in table:
            pd.concat([agreement(table, r).assign(rule=r) for r in RULES]).to_csv(
                out / "agreement.csv", index=False)
            fig = plot_pip_vs_z(table, threshold)
            fig.savefig(out / "pip_vs_z.png", dpi=200)
        console.print(f"wrote {escape(str(out))}", highlight=False)
    return table
