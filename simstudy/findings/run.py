"""Run the findings designs, one results store per study, resumably.

Each study goes through the project's runner (:func:`simstudy.study.runner.run_study`):
rerunning resumes (finished blocks are skipped, numbers equal an uninterrupted run). The
wall time of every run that fitted something is appended to ``<results>/findings_runs.json``
(the Cost section's measured time; the stores keep per-fit seconds).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..study.design import Design


def store_path(results: str | Path, study: str) -> Path:
    """``<results>/<study>.zarr``: the default and full configurations share it (full extends default)."""
    return Path(results) / f"{study}.zarr"


def runs_file(results: str | Path) -> Path:
    return Path(results) / "findings_runs.json"


def read_runs(results: str | Path) -> list[dict]:
    """Records of earlier runs (``[]`` when none): study, config, cluster, workers, fits_run,
    seconds, planned_s (the plan's estimate made before the study's first run, else None)."""
    p = runs_file(results)
    return json.loads(p.read_text()) if p.exists() else []


def holds_more(path: Path, design: Design) -> str | None:
    """Why the store at ``path`` is left alone: it was made for a larger design that extends
    ``design`` (e.g. ``--config full`` after ``--config default``); None when it should run."""
    from ..study.design import diff_designs
    from ..study.store import read_info

    if not path.exists():
        return None
    stored = read_info(path).design
    if stored.hash != design.hash and diff_designs(design, stored).kind == "extends":
        return (f"{path} holds {stored.name!r} with {stored.n_cells} cells x {stored.replicates} replicates, which "
                f"extends this configuration's design; left as it is (rerun with --config full to resume it)")
    return None


def planned_seconds(design: Design, workers: int, cluster: str, progress: bool) -> float | None:
    """``simstudy plan``'s wall-time estimate of ``design`` (calibrating shapes the per-machine
    cache lacks; :func:`simstudy.study.plan.plan_design`), or None when it cannot be made."""
    from ..study.plan import plan_design

    try:
        est = plan_design(design, workers=workers, cluster=cluster).est_wall_s
    except Exception as exc:  # an estimate is a nicety: never stop the run for it
        if progress:
            print(f"{design.name}: plan estimate not available ({exc})")
        return None
    return None if est is None else round(float(est), 1)


def run_designs(designs: dict[str, Design], results: str | Path, config: str, *, cluster: str = "local",
                workers: int = 2, client=None, progress: bool = True, plan: bool = True) -> dict[str, int]:
    """Run (or resume) every design into ``store_path(results, study)``; returns each
    study's exit code (:class:`simstudy.study.runner.RunSummary`). A store already holding a
    larger design that extends the study's (:func:`holds_more`) is skipped (no code); an
    interrupted run stops the loop (its code says so). ``plan``: before a study's first run
    (no store yet), record ``simstudy plan``'s estimate of its wall time (``planned_s``)."""
    from ..study.runner import run_study

    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    codes = {}
    for study, design in designs.items():
        why = holds_more(store_path(results, study), design)
        if why:
            if progress:
                print(f"{study}: {why}")
            continue
        planned = None
        if plan and not store_path(results, study).exists():
            planned = planned_seconds(design, workers, cluster if client is None else "local", progress)
        s = run_study(design, store_path(results, study), cluster=cluster, workers=workers, client=client,
                      progress=progress, command=f"analysis/findings.py --config {config}")
        codes[study] = s.exit_code
        if s.fits_run:
            runs = read_runs(results)
            runs.append({"study": study, "config": config, "cluster": cluster if client is None else "client",
                         "workers": workers, "fits_run": s.fits_run, "seconds": round(s.seconds, 1),
                         "planned_s": planned})
            runs_file(results).write_text(json.dumps(runs, indent=1) + "\n")
        if s.interrupted:  # Ctrl-C / SIGTERM: stop here, the next invocation resumes
            break
    return codes
