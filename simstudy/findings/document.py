"""FINDINGS.md from the findings stores: open each ``<results>/<study>.zarr``, summarise it with
:mod:`simstudy.evaluate`, and assemble the five sections (:mod:`.sections`) and their figures.

Everything but the lines ending in :data:`~.tables.TIMING` is a function of the stores' numbers,
so rewriting the document from the same stores gives the same text (:func:`mask_timing`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..evaluate import summarize
from ..evaluate.methods import store_methods, summarize_methods
from ..evaluate.report import md_table
from ..study.design import load_design
from ..study.store import open_results, read_info
from .run import read_runs, store_path
from .sections import NAMES, Figures, Study, section_classical, section_cost, section_hyper, section_longitudinal, section_small
from .subsets import EST_S_PER_FIT, STUDIES
from .tables import TIMING, core_seconds, group_mean, pm

_KEEP_METHODS = ("pip", "delta_true", "t_true", "status", "done", "flag", "score", "method_s")


def load_study(results: str | Path, study: str) -> Study | None:
    """The study's store, summarised over its done replicates (None when there is no store)."""
    path = store_path(results, study)
    if not path.exists():
        return None
    ds = open_results(path, chunks=None).load()  # no dask: small stores read faster in one go
    design = read_info(path).design
    summary = summarize(ds)
    methods = None
    if store_methods(ds) != ["ss_melsm"]:
        methods = summarize_methods(ds[[x for x in _KEEP_METHODS if x in ds]])
    return Study(study, ds, summary, design, methods)


def cost_frame(studies: dict[str, Study | None], results: str | Path, designs_dir: str | Path) -> pd.DataFrame:
    """Per study: done fits, core-seconds (:func:`~.tables.core_seconds`), fits of the full
    shipped design, measured wall seconds, the fits those seconds cover (``recorded_fits``: a run
    killed before it could record itself leaves fits without a wall time) and workers of the
    runs that fitted (NaN if none)."""
    runs = read_runs(results)
    rows = []
    for name, st in studies.items():
        if st is None:
            continue
        fits, secs = core_seconds(st.ds, st.design.block_size)
        mine = [r for r in runs if r["study"] == name]
        full = Path(designs_dir) / f"{name}.toml"
        rows.append({"study": name, "fits": int(fits.sum()), "core_s": float(secs.sum()),
                     "full_fits": load_design(full, max_cells=None, max_tasks=None).n_fits if full.exists() else 0,
                     "measured_wall_s": float(sum(r["seconds"] for r in mine)) if mine else float("nan"),
                     "recorded_fits": int(sum(r.get("fits_run", 0) for r in mine)),
                     "planned_wall_s": next((float(r["planned_s"]) for r in mine if r.get("planned_s") is not None),
                                            float("nan")),
                     "workers": max((r["workers"] for r in mine), default=0)})
    return pd.DataFrame(rows, columns=["study", "fits", "core_s", "full_fits", "measured_wall_s", "recorded_fits",
                                       "planned_wall_s", "workers"])


def convergence_table(studies: dict[str, Study | None]) -> pd.DataFrame:
    rows = []
    for name, st in studies.items():
        if st is None:
            continue
        s = st.summary
        every = np.ones(s.sizes["cell"], bool)
        nc, div = group_mean(s, "share_not_converged", every), group_mean(s, "share_divergent", every)
        ext = group_mean(s, "extensions_mean", every)
        rows.append({"study": name, "fits": int(np.asarray(s["n_used"].values).sum()),
                     "failed": int(np.asarray(s["n_failed"].values).sum()),
                     "not converged (mean over cells)": pm(nc[0], nc[1]),
                     "with divergences": pm(div[0], div[1]), "extensions per fit": pm(ext[0], ext[1])})
    return pd.DataFrame(rows)


def plan_lines(cost: pd.DataFrame) -> list[str]:
    """``simstudy plan``'s estimate of each study (made before its first run, recorded in the
    runs file) beside the measured wall time; lines end in TIMING."""
    out = [f"| study | plan estimate | measured | measured / estimate | {TIMING}", f"|---|---|---|---| {TIMING}"]
    for r in cost.itertuples():
        est, meas = r.planned_wall_s, r.measured_wall_s
        whole = r.recorded_fits >= r.fits  # else a killed run's time is missing: no ratio
        ratio = f"{meas / est:.2f}" if whole and np.isfinite(est) and np.isfinite(meas) and est > 0 else "–"
        part = "" if whole or not np.isfinite(meas) else f" ({r.recorded_fits} of {r.fits} fits)"
        out.append(f"| {r.study} | {f'{est / 60:.1f} min' if np.isfinite(est) else 'not made'} | "
                   f"{f'{meas / 60:.1f} min' if np.isfinite(meas) else '–'} on {r.workers} workers{part} | {ratio} | {TIMING}")
    return out


def levels_run(design, full) -> str:
    """The factors ``design`` keeps fewer levels of than ``full``: ``"J: 50, 150 of 50, 150, 300; ..."``
    (``"all"`` when none)."""
    parts = []
    for name, levels in full.factors.items():
        kept = design.factors.get(name, ())
        if len(kept) < len(levels):
            fmt = lambda xs: ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in xs)  # noqa: E731
            parts.append(f"{NAMES.get(name, name)}: {fmt(kept)} of {fmt(levels)}")
    extras = len(full.extra) - len(design.extra)
    if extras > 0:
        parts.append(f"{extras} of {len(full.extra)} extra cells left out")
    return "; ".join(parts) or "all"


def _header(studies: dict[str, Study | None], full: dict) -> list[str]:
    rows = []
    for name in STUDIES:
        st, fd = studies.get(name), full.get(name)
        row = {"study": name, "design": f"designs/{name}.toml"}
        if st is None:
            rows.append({**row, "cells": "not run", "levels run": "–", "replicates per cell": "–",
                         "est. core-min": "–"})
            continue
        done = np.asarray(st.ds["done"].values, bool)
        reps = sorted(set(done.sum(1).tolist()))
        est = EST_S_PER_FIT.get(name, float("nan")) * st.design.n_fits / 60
        rows.append({**row, "cells": f"{done.shape[0]} of {fd.n_cells if fd else '?'}",
                     "levels run": levels_run(st.design, fd) if fd else "?",
                     "replicates per cell": f"{reps[0]}–{reps[-1]}" if len(reps) > 1 else str(reps[0]),
                     "est. core-min": f"{est:.0f}"})
    return ["# Findings", "",
            "<!-- written by `python analysis/findings.py` from the stores in results/; do not edit by hand -->", "",
            "What the shipped studies say about the SS-MELSM, computed from the results stores by `simstudy.evaluate`: "
            "every value is ± its Monte Carlo SE, with the cells and fits it rests on. Flags at PIP ≥ 0.75; equal-weight "
            "means over cells, MCSE sqrt(Σ mcse²)/k. Same seeds, same numbers: only lines ending in a timing mark "
            "(wall-clock measurements) change when the studies are rerun.", "",
            "Which cells were run: each store holds a subset of its shipped design with the same cells and data sets "
            "(a data set's seed depends on its generator settings and replicate only, so every prior setting and "
            "method is scored on the same data sets), so running the full design on the store only adds cells and "
            "replicates "
            "(`python analysis/findings.py --config full`). The estimate is sampling time at the seconds per fit "
            "measured on single cells before the run (`simstudy.findings.subsets.EST_S_PER_FIT`); section 5 has "
            "what the run took.", "",
            md_table(pd.DataFrame(rows)), ""]


def write_findings(results: str | Path, out: str | Path, figures: str | Path | None = None,
                   designs_dir: str | Path = "designs", workers: int = 2) -> Path:
    """Write FINDINGS.md (``out``) and its PNG figures (``figures``, default ``<out's folder>/findings``)
    from the stores in ``results``; returns ``out``."""
    out = Path(out)
    figures = Path(figures) if figures is not None else out.parent / "findings"
    link = os.path.relpath(figures, out.parent).replace(os.sep, "/")
    figs = Figures(figures, link)
    studies = {name: load_study(results, name) for name in STUDIES}
    full = {name: load_design(p, max_cells=None, max_tasks=None) for name in STUDIES
            if (p := Path(designs_dir) / f"{name}.toml").exists()}
    cost = cost_frame(studies, results, designs_dir)
    lines = _header(studies, full)
    lines += section_hyper(studies["robustness"], studies["sensitivity"], studies["multiplicity"],
                           studies["calibration"], figs)
    lines += section_classical(studies["paper_study1"], figs)
    lines += section_small(studies["paper_study2"], figs)
    lines += section_longitudinal(studies["longitudinal"], figs)
    lines += section_cost(studies, cost, plan_lines(cost), figs, convergence_table(studies))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return out


def mask_timing(text: str) -> str:
    """The document without its timing lines (those ending in TIMING): equal for reruns on the same stores."""
    return "\n".join(line for line in text.splitlines() if TIMING not in line)
