"""The five sections of FINDINGS.md: each opens with a two-sentence answer whose numbers and
direction words come from the results (:mod:`.tables`), then the evidence: tables (every
value ± its MCSE, with the cells and fits it rests on) and figures from
:mod:`simstudy.evaluate.plots`.

Each ``section_*`` takes the per-study inputs (:class:`Study`: the store's dataset and
summaries; ``None`` when the study was not run) and a :class:`Figures` writer, and returns
Markdown lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..evaluate import plots as P
from ..evaluate.fits import factor_levels
from ..evaluate.methods import METHOD_LABELS, overall_by_method, paired_difference
from ..evaluate.report import md_table
from .published import PUBLISHED_STUDY1, PUBLISHED_STUDY1_SLAB_CELLS
from .tables import (TIMING, compare_word, differs, extreme, formatted, group_mean, grouped, pm, ratio_text,
                     row_at, v, vals)

HEADS = {"tpr": "TPR", "fpr": "FPR", "fwer": "P(≥1 false flag)", "ece": "ECE", "tau_t_coverage": "cover τ_t",
         "roc_auc": "ROC AUC", "precision": "precision", "brier": "Brier", "tau_u1_bias": "bias τ_u1",
         "tau_u1_coverage": "cover τ_u1", "share_not_converged": "not converged"}
NAMES = {"pi": "π", "scale_sd": "scale-SD prior", "n_groups": "J", "group_size": "n", "share_inconsistent": "share",
         "slab_sd": "slab SD", "phi": "φ", "mode": "data", "dropout": "dropout"}


@dataclass
class Study:
    """One study's store: the loaded dataset, its summary (:func:`simstudy.evaluate.summarize`)
    and, with comparators, its per-method summary; ``design`` is the stored design."""

    name: str
    ds: xr.Dataset
    summary: xr.Dataset
    design: object
    methods: xr.Dataset | None = None


@dataclass
class Figures:
    """Writes PNG figures into ``folder``; ``link`` is the folder as FINDINGS.md refers to it."""

    folder: Path
    link: str
    written: list[Path] = field(default_factory=list)

    def add(self, fig, name: str, caption: str) -> str:
        self.written += P.save_figure(fig, self.folder, name, formats=("png",), dpi=110)
        return f"![{caption}]({self.link}/{name}.png)"


def _table(frame: pd.DataFrame, by: list[str], metrics: list[str]) -> str:
    return md_table(formatted(frame, by, {m: HEADS.get(m, m) for m in metrics}, NAMES))


def _cells(k: int) -> str:
    return f"{k} cell{'s' if k != 1 else ''}"


def _not_run(name: str) -> list[str]:
    return [f"*The {name} study has no results store yet: run `python analysis/findings.py` (see the top).*", ""]


def _levels_text(factor: str, levels) -> str:
    return ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in levels)


def _varying(s: xr.Dataset, names: list[str]) -> list[str]:
    return [n for n in names if n in s.coords]


def _is_beta(level) -> bool:
    return isinstance(level, str) and level.startswith("beta")


# =============================================================================== 1 hyperparameters
HYPER = ["tpr", "fpr", "fwer", "ece", "tau_t_coverage"]


#: the level P(at least one false flag) must keep at every truth (the decision rule's default)
DECISION_LEVEL = 0.1


def _where(key: tuple, by: list[str]) -> str:
    return ", ".join(f"{NAMES.get(n, n)} = {x:g}" if isinstance(x, float) else f"{NAMES.get(n, n)} = {x}"
                     for n, x in zip(by, key))


def robustness_answer(dec: pd.DataFrame, truths: str) -> str:
    """The first sentence of section 1 from :func:`simstudy.evaluate.decision.decision_table`:
    the recommended prior per (J, n) with its worst-case TPR and P(≥1 false flag) ± MCSE, or that
    no setting keeps the level. ``truths``: the truths ranged over, in words."""
    by, level = list(dec.attrs["by"]), dec.attrs["level"]
    groups = [((), dec)] if not by else [((k if isinstance(k, tuple) else (k,)), g) for k, g in
                                         dec.groupby(by, sort=True)]
    picks, none = [], []
    for key, g in groups:
        best = g[g["recommended"]]
        if best.empty:
            w = g.sort_values("worst_fwer").iloc[0]
            none.append(f"{_where(key, by)} (lowest worst case {pm(w.worst_fwer, w.worst_fwer_mcse)}, {w.setting})")
        else:
            picks.append((key, best.iloc[0]))
    head = (f"Not knowing the truth ({truths}), the prior to use is the one whose P(≥1 false flag) stays ≤ {level:g} "
            "at every truth with the best worst-case TPR")
    settings = {b.setting for _, b in picks}
    if picks and len(settings) == 1 and not none:
        b = picks[0][1]
        tpr = [x.worst_tpr for _, x in picks]
        fw = max(picks, key=lambda kb: kb[1].worst_fwer)[1]
        text = (f"{head}: **{b.setting}** at every J and n studied, with worst-case TPR from "
                f"{min(tpr):.2f} to {max(tpr):.2f} and P(≥1 false flag) at most {pm(fw.worst_fwer, fw.worst_fwer_mcse)}")
    else:
        parts = [f"{_where(k, by)}: **{b.setting}** (worst-case TPR {pm(b.worst_tpr, b.worst_tpr_mcse)}, "
                 f"P(≥1 false flag) at most {pm(b.worst_fwer, b.worst_fwer_mcse)})" for k, b in picks]
        text = f"{head}: " + ("; ".join(parts) if parts else "none")
    if none:
        text += f"; no setting keeps the level at {'; '.join(none)}"
    return text + "."


def _truths_text(s: xr.Dataset) -> str:
    parts = []
    for f, word in (("share_inconsistent", "a share of inconsistent groups"), ("slab_sd", "a slab SD")):
        if f in s.coords:
            parts.append(f"{word} of {_levels_text(f, factor_levels(s, f))}")
    return " and ".join(parts) or "the truths of the design"


def section_robustness(rob: Study, figs: Figures) -> tuple[str, list[str]]:
    """(the answer sentence, the evidence lines) of the robustness study: the decision rule of
    :mod:`simstudy.evaluate.decision` per (J, n), the runner-up comparison with paired MCSE,
    every setting's worst cases and the regret / P(≥1 false flag) heatmaps."""
    from ..evaluate.decision import decision_table, regret_table
    from ..evaluate.report import decision_overview, recommendation_lines

    s = rob.summary
    dec = decision_table(s, DECISION_LEVEL)
    reg = regret_table(s, DECISION_LEVEL)
    reps = sorted(set(np.asarray(rob.ds["done"].values, bool).sum(1).tolist()))
    settings = [f for f in dec.attrs["settings"]]
    body = [f"**Robustness study: choosing a prior without knowing the truth** ({_cells(s.sizes['cell'])}; truths: "
            f"{_truths_text(s)}; prior settings: {' x '.join(NAMES.get(f, f) for f in settings)}; "
            f"{reps[0] if len(reps) == 1 else f'{reps[0]}–{reps[-1]}'} replicates per cell, every setting fitted to "
            "the same data sets). A setting is admissible when its P(≥1 false flag) is at most "
            f"{DECISION_LEVEL:g} at every truth, the null share included; admissible settings are ranked by their "
            "worst-case TPR over the non-null truths; the runner-up comparison is the paired TPR difference at the "
            "recommended setting's worst truth:", "",
            *recommendation_lines(rob.ds, dec, reg, DECISION_LEVEL), "",
            "**Every setting** (rank blank: not admissible; max regret: the largest shortfall of TPR against the best "
            "admissible setting at any truth):", "", decision_overview(dec), "",
            figs.add(P.plot_decision(reg, "regret", DECISION_LEVEL), "hyper_regret",
                     "Regret of each prior setting at each truth"), "",
            figs.add(P.plot_decision(reg, "fwer", DECISION_LEVEL), "hyper_decision_fwer",
                     "P(at least one false flag) of each prior setting at each truth"), ""]
    return robustness_answer(dec, _truths_text(s)), body


def section_hyper(rob: Study | None, sens: Study | None, mult: Study | None, cal: Study | None,
                  figs: Figures) -> list[str]:
    """Section 1: the robustness study's decision (the prior to use when the truth is unknown)
    first; then what the priors do at a fixed truth (sensitivity), fixed against Beta pi as J
    grows (multiplicity) and calibration."""
    out = ["## 1. Hyperparameters", ""]
    answer, rob_body = [], []
    if rob is not None:
        first, rob_body = section_robustness(rob, figs)
        answer.append(first)
    prior_txt = None
    if sens is not None:
        gs = grouped(sens.summary, ["scale_sd"], ["tpr", "fpr"])
        tmax, tmin = extreme(gs, "tpr"), extreme(gs, "tpr", largest=False)
        if tmax is not None and len(gs) > 1:
            beyond = "beyond" if differs(*vals(tmax, "tpr"), *vals(tmin, "tpr")) else "within"
            prior_txt = (f"at the sensitivity study's single truth, TPR across scale-SD priors ranges from "
                         f"{v(tmin, 'tpr')} ({tmin['scale_sd']}) to {v(tmax, 'tpr')} ({tmax['scale_sd']}), a spread "
                         f"{beyond} Monte Carlo error")
    beta_txt = None
    if mult is not None:
        m = mult.summary
        levels = factor_levels(m, "pi")
        beta = next((lv for lv in levels if _is_beta(lv)), None)
        fixed = next((lv for lv in levels if not _is_beta(lv)), None)
        if beta is not None and fixed is not None:
            null = 0.0 if 0.0 in factor_levels(m, "share_inconsistent") else factor_levels(m, "share_inconsistent")[0]
            Jmax = factor_levels(m, "n_groups")[-1]
            gb = grouped(m, ["pi"], ["fwer", "tpr", "ece"], where={"share_inconsistent": null, "n_groups": Jmax})
            rb, rf = row_at(gb, pi=beta), row_at(gb, pi=fixed)
            w = compare_word(*vals(rb, "fwer"), *vals(rf, "fwer"), "higher than", "lower than", "within Monte Carlo error of")
            beta_txt = (f"a {beta} prior on pi gives P(≥1 false flag) {v(rb, 'fwer')} at J = {Jmax:g} with share "
                        f"{null:g} inconsistent groups, {w} fixed π = {fixed}'s {v(rf, 'fwer')}")
            if null == 0:  # every truth 0: the ECE is the mean PIP
                beta_txt += (f", yet the PIPs stay near the prior there (mean PIP {v(rf, 'ece')} with π = {fixed}, "
                             f"{v(rb, 'ece')} with {beta}: a PIP under the flag threshold is no evidence of consistency)")
            shares = [x for x in factor_levels(m, "share_inconsistent") if x > 0]
            if shares:  # where the two differ most: few inconsistent groups among many
                gp = grouped(m, ["pi"], ["fwer", "fpr", "tpr"], where={"share_inconsistent": shares[0], "n_groups": Jmax})
                pb, pf = row_at(gp, pi=beta), row_at(gp, pi=fixed)
                wf = compare_word(*vals(pb, "fwer"), *vals(pf, "fwer"), "against", "against", "within Monte Carlo error of")
                beta_txt += (f"; with a share {shares[0]:g} of inconsistent groups it gives {v(pb, 'fwer')} {wf} "
                             f"{v(pf, 'fwer')} (FPR {v(pb, 'fpr')} against {v(pf, 'fpr')}), at a TPR of {v(pb, 'tpr')} "
                             f"against {v(pf, 'tpr')}")
    second = "; ".join(t for t in (beta_txt, prior_txt) if t)
    if second:
        answer.append(second[:1].upper() + second[1:] + ".")
    if answer:
        out += ["**Answer.** " + " ".join(answer), ""]
    out += rob_body if rob is not None else _not_run("robustness")
    if sens is None:
        out += _not_run("sensitivity")
    else:
        s = sens.summary
        by = _varying(s, ["n_groups", "group_size"])
        truth = ", ".join(f"{NAMES[f]} {_levels_text(f, sorted({c.generator.get(f) for c in sens.design.cells()}))}"
                          for f in ("share_inconsistent", "slab_sd")
                          if None not in {c.generator.get(f) for c in sens.design.cells()}) or "one truth"
        out += [f"**What the priors do at one fixed truth, sensitivity study** ({_cells(s.sizes['cell'])}; {truth}; "
                "each row the equal-weight mean over the other factors' cells). These rows describe the priors at a "
                "truth a user cannot know; choose a prior by the robustness study above:", "",
                _table(grouped(s, ["pi", *by], HYPER), ["pi", *by], HYPER), "",
                "**Scale-SD prior (family and scale), same truth:**", "",
                _table(grouped(s, ["scale_sd", *by], HYPER), ["scale_sd", *by], HYPER), "",
                figs.add(P.plot_sensitivity(s, "fwer", x="pi", hue="scale_sd", col="n_groups", row="group_size"),
                         "hyper_fwer", "P(at least one false flag) against pi"), "",
                figs.add(P.plot_sensitivity(s, "tpr", x="pi", hue="scale_sd", col="n_groups", row="group_size"),
                         "hyper_tpr", "TPR against pi"), ""]
    if mult is None:
        out += _not_run("multiplicity")
    else:
        m = mult.summary
        by = ["pi", "share_inconsistent", "n_groups"]
        met = ["tpr", "fpr", "fwer", "ece"]
        out += ["**Fixed π = 0.5 against a Beta hyperprior on π, multiplicity study** (false flags as J grows):", "",
                _table(grouped(m, by, met), by, met), "",
                figs.add(P.plot_sensitivity(m, "fwer", x="n_groups", hue="pi", col="share_inconsistent"),
                         "hyper_multiplicity", "P(at least one false flag) against J, fixed and Beta pi"), ""]
    if cal is None:
        out += _not_run("calibration")
    else:
        c = cal.summary
        by = _varying(c, ["mode", "pi"])
        met = ["ece", "brier", "tpr", "fpr", "fwer"]
        out += ["**Calibration study** (prior-matched data: PIPs must be calibrated; fixed 10% share):", "",
                _table(grouped(c, by, met), by, met), "",
                figs.add(P.plot_reliability(cal.ds, by="mode", hue="pi"), "hyper_reliability",
                         "Reliability of PIPs, fixed and Beta pi"), ""]
    return out


# =============================================================================== 2 classical method
def _paired(ds: xr.Dataset, summary_m: xr.Dataset, metric: str, other: str, mask: np.ndarray) -> tuple[float, float, int, int]:
    """SS-MELSM minus ``other``: mean over the cells in ``mask`` of the per-cell paired difference,
    MCSE sqrt(sum mcse^2)/k, cells k, replicates used."""
    d = paired_difference(ds, metric, "ss_melsm", other)
    diff, se, n = np.asarray(d["diff"], float)[mask], np.asarray(d["mcse"], float)[mask], np.asarray(d["n"])[mask]
    ok = np.isfinite(diff)
    k = int(ok.sum())
    if k == 0:
        return float("nan"), float("nan"), 0, 0
    s = se[ok]
    return (float(diff[ok].mean()), float(np.sqrt(np.sum(s**2)) / k) if np.isfinite(s).all() else float("nan"),
            k, int(n[ok].sum()))


def section_classical(p1: Study | None, figs: Figures) -> list[str]:
    out = ["## 2. Against the classical method", ""]
    if p1 is None or p1.methods is None:
        return out + _not_run("paper_study1")
    sm, ds = p1.methods, p1.ds
    shares = [x for x in factor_levels(sm, "share_inconsistent") if x > 0]
    slab = {"share_inconsistent": shares}
    mask = np.array([x in shares for x in sm["share_inconsistent"].values.tolist()])
    over = overall_by_method(sm, ("tpr", "fpr", "precision"), cells=slab)
    methods = [m for m in sm["method"].values.tolist()]
    ref = next((m for m in ("hlm_qq", "hlm_z") if m in methods), next((m for m in methods if m != "ss_melsm"), None))

    def o(method, metric):
        r = over[over["method"] == method]
        return (float(r[metric].iloc[0]), float(r[f"{metric}_mcse"].iloc[0])) if len(r) else (np.nan, np.nan)

    n_sets = int(np.asarray(p1.summary["n_used"].values)[mask].sum())
    answer = []
    if ref is not None:
        dt = _paired(ds, sm, "tpr", ref, mask)
        df = _paired(ds, sm, "fpr", ref, mask)
        answer.append(
            f"On the same {n_sets} data sets ({_cells(int(mask.sum()))} with inconsistent groups) the SS-MELSM's TPR is "
            f"{pm(*o('ss_melsm', 'tpr'))} against {pm(*o(ref, 'tpr'))} for the {METHOD_LABELS.get(ref, ref)} rule "
            f"(paired difference {pm(dt[0], dt[1])}, {'beyond' if differs(dt[0], dt[1], 0, 0) else 'within'} 2 MCSE) "
            f"and its FPR {pm(*o('ss_melsm', 'fpr'))} against {pm(*o(ref, 'fpr'))} (paired difference "
            f"{pm(df[0], df[1])}).")
    pub = PUBLISHED_STUDY1
    parts = [f"the {METHOD_LABELS.get(m, m)} at TPR {pm(*o(m, 'tpr'))} (published {pub[m]['tpr']}) and FPR "
             f"{pm(*o(m, 'fpr'))} (published {pub[m]['fpr']})" for m in ("ss_melsm", "hlm_qq") if m in methods]
    if parts:
        answer.append(
            f"Against the authors' published means over all {PUBLISHED_STUDY1_SLAB_CELLS} with-slab Study 1 cells, "
            f"this run ({_cells(int(mask.sum()))} of them, so indicative only) puts " + " and ".join(parts) + ".")
    out += ["**Answer.** " + " ".join(answer), ""]
    rows = []
    for m in methods:
        rows.append({"method": METHOD_LABELS.get(m, m),
                     **{HEADS[k]: f"{pm(*o(m, k))} [{pub.get(m, {}).get(k, '–')}]" for k in ("tpr", "fpr", "precision")},
                     "cells": int(over[over["method"] == m]["tpr_cells"].iloc[0]), "data sets": n_sets})
    out += [f"**paper_study1, cells with inconsistent groups** (equal-weight means over cells; [published mean over "
            f"all {PUBLISHED_STUDY1_SLAB_CELLS} with-slab cells]):", "", md_table(pd.DataFrame(rows)), ""]
    by_J = overall_by_method(sm, ("fpr", "tpr"), cells=slab, by="n_groups")
    rows = [{"J": f"{r.n_groups:g}", "method": METHOD_LABELS.get(r.method, r.method),
             "TPR": pm(r.tpr, r.tpr_mcse), "FPR": pm(r.fpr, r.fpr_mcse),
             "published FPR": pub.get(r.method, {}).get("fpr_by_J", {}).get(int(r.n_groups), "–"), "cells": r.fpr_cells}
            for r in by_J.itertuples()]
    out += ["**By number of groups J:**", "", md_table(pd.DataFrame(rows)), ""]
    paired = []
    for other in (m for m in methods if m != "ss_melsm"):
        dt, df = _paired(ds, sm, "tpr", other, mask), _paired(ds, sm, "fpr", other, mask)
        paired.append({"SS-MELSM minus": METHOD_LABELS.get(other, other), "ΔTPR": pm(dt[0], dt[1]),
                       "ΔFPR": pm(df[0], df[1]), "cells": dt[2], "replicates": dt[3]})
    if paired:
        out += ["**Paired differences on the same data sets** (per cell mean of the per-replicate difference, MCSE "
                "sd/sqrt(R); averaged over cells):", "", md_table(pd.DataFrame(paired)), ""]
    null = np.array([x == 0 for x in sm["share_inconsistent"].values.tolist()])
    if null.any():
        rows = []
        for m in methods:
            mean, se, k = group_mean(sm.isel(method=methods.index(m)), "fwer", null)
            rows.append({"method": METHOD_LABELS.get(m, m), "P(≥1 false flag)": pm(mean, se),
                         "published range": pub.get(m, {}).get("null_fwer", "–"), "cells": k,
                         "data sets": int(np.asarray(p1.summary["n_used"].values)[null].sum())})
        out += ["**Null cells (no inconsistent groups):**", "", md_table(pd.DataFrame(rows)), ""]
    out += [figs.add(P.plot_methods(sm, x="n_groups"), "classical_methods", "Methods on the same data sets"), ""]
    return out


# =============================================================================== 3 small and ragged groups
SMALL = ["tpr", "fpr", "fwer", "ece", "tau_t_coverage", "share_not_converged"]


def section_small(p2: Study | None, figs: Figures) -> list[str]:
    out = ["## 3. Small and ragged groups", ""]
    if p2 is None:
        return out + _not_run("paper_study2")
    s = p2.summary
    ns = factor_levels(s, "group_size")
    g = grouped(s, ["group_size"], SMALL)
    small, large = g.iloc[0], g.iloc[-1]
    w = compare_word(*vals(small, "tpr"), *vals(large, "tpr"), "higher than", "lower than", "within Monte Carlo error of")
    if len(g) > 1:
        answer = [f"With ragged groups of mean size n = {small['group_size']:g} the SS-MELSM's TPR is {v(small, 'tpr')}, "
                  f"{w} the {v(large, 'tpr')} at n = {large['group_size']:g}, with FPR {v(small, 'fpr')} against "
                  f"{v(large, 'fpr')} (means over J and share)."]
    else:
        answer = [f"With ragged groups of mean size n = {small['group_size']:g} the SS-MELSM's TPR is {v(small, 'tpr')} "
                  f"and its FPR {v(small, 'fpr')} (means over J and share)."]
    null = [x for x in factor_levels(s, "share_inconsistent") if x == 0]
    gn = grouped(s, ["n_groups", "group_size"], ["fwer"], where={"share_inconsistent": null} if null else None)
    hi, lo = extreme(gn, "fwer"), extreme(gn, "fwer", largest=False)
    nc = group_mean(s, "share_not_converged", np.ones(s.sizes["cell"], bool))
    if hi is not None:
        answer.append(f"P(≥1 false flag) {'with no inconsistent groups ' if null else ''}ranges from {v(lo, 'fwer')} "
                      f"(J = {lo['n_groups']:g}, n = {lo['group_size']:g}) to {v(hi, 'fwer')} (J = {hi['n_groups']:g}, "
                      f"n = {hi['group_size']:g}); a share {pm(nc[0], nc[1])} of the fits fails the convergence rule (they still "
                      "count).")
    out += ["**Answer.** " + " ".join(answer), ""]
    by = ["n_groups", "group_size", "share_inconsistent"]
    out += [f"**paper_study2** (group sizes Poisson(n − 2) + 2; n levels {_levels_text('n', ns)}):", "",
            _table(grouped(s, by, SMALL), by, SMALL), "",
            figs.add(P.plot_sensitivity(s, "fpr", x="group_size", hue="n_groups", col="share_inconsistent"),
                     "small_fpr", "FPR in small ragged groups"), "",
            figs.add(P.plot_sensitivity(s, "tpr", x="group_size", hue="n_groups", col="share_inconsistent"),
                     "small_tpr", "TPR in small ragged groups"), ""]
    return out


# =============================================================================== 4 longitudinal
LONG = ["tpr", "fpr", "fwer", "roc_auc", "tau_u1_bias", "tau_u1_coverage"]


def section_longitudinal(lo: Study | None, figs: Figures) -> list[str]:
    out = ["## 4. Longitudinal data", ""]
    if lo is None:
        return out + _not_run("longitudinal")
    s = lo.summary
    grid = {"dropout": 0.0} if "dropout" in s.coords else None
    phis, Ts = factor_levels(s, "phi"), factor_levels(s, "group_size")
    T = Ts[-1]
    g = grouped(s, ["group_size", "phi"], LONG, where=grid)
    r0, r1 = row_at(g, group_size=T, phi=phis[0]), row_at(g, group_size=T, phi=phis[-1])
    w = compare_word(*vals(r1, "fpr"), *vals(r0, "fpr"), "higher, beyond Monte Carlo error",
                     "lower, beyond Monte Carlo error", "no different beyond Monte Carlo error")
    answer = [f"At T = {T:g} occasions, with AR(1) residuals of φ = {phis[-1]:g} the FPR is {v(r1, 'fpr')} against "
              f"{v(r0, 'fpr')} with φ = {phis[0]:g} ({ratio_text(vals(r1, 'fpr')[0], vals(r0, 'fpr')[0])}, {w}), and "
              f"P(≥1 false flag) is {v(r1, 'fwer')} against {v(r0, 'fwer')}."]
    a, b = row_at(g, group_size=Ts[0], phi=phis[-1]), row_at(g, group_size=Ts[-1], phi=phis[-1])
    w2 = compare_word(*vals(b, "fpr"), *vals(a, "fpr"), "more occasions raise it", "more occasions lower it",
                      "more occasions do not change it beyond Monte Carlo error")
    c, d = row_at(g, group_size=Ts[0], phi=phis[0]), row_at(g, group_size=Ts[-1], phi=phis[0])
    answer.append(f"With φ = {phis[-1]:g} the FPR is {v(a, 'fpr')} at T = {Ts[0]:g} and {v(b, 'fpr')} at "
                  f"T = {Ts[-1]:g} ({w2}), while with independent residuals TPR is {v(c, 'tpr')} at T = {Ts[0]:g} "
                  f"and {v(d, 'tpr')} at T = {Ts[-1]:g}.")
    out += ["**Answer.** " + " ".join(answer), ""]
    by = _varying(s, ["n_groups"]) + ["group_size", "phi", "share_inconsistent"]
    by = [f for f in by if len(factor_levels(s, f)) > 1 or f in ("group_size", "phi")]
    out += ["**longitudinal** (T = occasions per person; the model assumes independent residuals, so φ > 0 is the "
            "misspecification):", "", _table(grouped(s, by, LONG, where=grid), by, LONG), ""]
    if grid is not None:
        drop = [x for x in factor_levels(s, "dropout") if x != 0]
        if drop:
            byd = ["dropout", "group_size", "phi"]
            out += ["**MCAR dropout cell:**", "", _table(grouped(s, byd, LONG, where={"dropout": drop}), byd, LONG), ""]
    fixed = {"dropout": 0.0} if grid else None
    out += [figs.add(P.plot_sensitivity(s, "fpr", x="group_size", hue="phi", col="share_inconsistent",
                                        row="n_groups" if "n_groups" in s.coords else None, fixed=fixed),
                     "longitudinal_fpr", "FPR against T and phi"), ""]
    return out


# =============================================================================== 5 cost
def section_cost(studies: dict[str, Study | None], cost: pd.DataFrame, plan_lines: list[str], figs: Figures,
                 conv: pd.DataFrame) -> list[str]:
    """``cost``: one row per study (``study, fits, core_s, full_fits, measured_wall_s, workers``);
    ``plan_lines``: the ``simstudy plan`` paragraph (timing-marked); ``conv``: convergence per study."""
    out = ["## 5. Cost", ""]
    c = cost[cost["fits"] > 0]
    if c.empty:
        return out + ["*No study has results yet.*", ""]
    fits, core_s = int(c["fits"].sum()), float(c["core_s"].sum())
    per = c.assign(s_per_fit=c["core_s"] / c["fits"])
    hi, lo = per.loc[per["s_per_fit"].idxmax()], per.loc[per["s_per_fit"].idxmin()]
    full_core_s = float((per["s_per_fit"] * per["full_fits"]).sum())
    out += [f"**Answer.** This run's {fits} fits took {core_s / 3600:.2f} core-hours on this machine class "
            f"({60 * fits / core_s:.1f} fits per core-minute), from {lo['s_per_fit']:.1f} core-s per fit "
            f"({lo['study']}) to {hi['s_per_fit']:.1f} ({hi['study']}). {TIMING}",
            f"At these per-study rates the full shipped designs ({int(per['full_fits'].sum())} fits) would take about "
            f"{full_core_s / 3600:.1f} core-hours: {full_core_s / 3600 / 2:.1f} h on 2 workers or "
            f"{full_core_s / 3600 / 40:.1f} h on 40 (cells not run here may cost more or less per fit). {TIMING}", ""]
    rows = []
    for r in per.itertuples():
        wall = f"{r.measured_wall_s / 60:.1f} min on {r.workers} worker{'s' if r.workers != 1 else ''}" if np.isfinite(r.measured_wall_s) else "–"
        if np.isfinite(r.measured_wall_s) and r.recorded_fits < r.fits:
            wall += f" for {r.recorded_fits} of the {r.fits} fits (an interrupted run recorded no time)"
        rows.append(f"| {r.study} | {r.fits} | {r.s_per_fit:.2f} | {60 / r.s_per_fit:.1f} | {r.core_s / 3600:.3f} | "
                    f"{wall} | {r.full_fits} | {r.s_per_fit * r.full_fits / 3600:.1f} | {TIMING}")
    out += ["Core-seconds = sampling seconds of every fit + each block's compile seconds + the comparators' seconds "
            "(store variables `sample_s`, `compile_s`, `method_s`); measured wall time from `results/findings_runs.json`.",
            "", "| study | fits | core-s per fit | fits per core-minute | core-hours | measured wall time | "
            "fits in the full design | full design, core-hours |", "|---|---|---|---|---|---|---|---|", *rows, ""]
    out += ["**Convergence** (usable fits; a not-converged fit failed the rule after its extensions and still counts):",
            "", md_table(conv), ""]
    out += ["### `simstudy plan` against the measured time", "", *plan_lines, ""]
    out += ["**Ratio to ivd on Saeb M1**: ivd (R/NIMBLE) cannot be installed on this machine (no CRAN), so there is no "
            "ratio from one run. Its Saeb M1 fit (2 chains x (3000 + 2000)) took 318 s wall on this machine class in "
            "issue #15's side-by-side run; `benchmarks/bench_saeb.py` times `simstudy fit` on the same model, stage by "
            "stage (figures in the README's benchmark table: a ratio across days, so ±50%).", ""]
    for name in ("sensitivity", "paper_study1"):
        st = studies.get(name)
        if st is not None and np.isfinite(np.asarray(st.summary["sample_s"].values, float)).any():
            out += [figs.add(P.plot_runtime(st.summary), f"cost_runtime_{name}", f"Runtime per fit, {name}")
                    + f" {TIMING}", ""]
    return out
