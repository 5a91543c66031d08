"""A fit directory (``simstudy fit --out DIR``): written through a temporary directory
renamed into place (never half-written; free space checked first) and read back for
``simstudy compare``: ``posterior.nc``, ``groups.csv``, ``summary.csv``, ``fit.json`` and
the plots."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .csvsafe import spreadsheet_safe
from .summary import _SECTIONS, groups_csv_table, summary_sections


class FitInputError(ValueError):
    """A problem with the command's inputs (file, options, output directory)."""

def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return value


def fit_info(fit, *, threshold: float, loo=None, waic=None, data_file=None, extra: dict | None = None) -> dict:
    """What ``fit.json`` records: formulas, priors, settings, timings, diagnostics, data."""
    from importlib.metadata import version  # not `import arviz`: it imports matplotlib (start-up)

    import jax
    import numpyro

    from .. import __version__
    from ..environment import environment_record
    from .compare import PARETO_K_BAD

    meta = fit.data.meta or {}
    s = fit.settings
    table = fit.groups_table(threshold)
    info = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data_file": None if data_file is None else Path(data_file).name,
        "data_path": None if data_file is None else str(Path(data_file).absolute()),
        "location_formula": meta.get("location_formula"),
        "scale_formula": meta.get("scale_formula"),
        "response": fit.data.response,
        "group": fit.data.group_name,
        "n_obs": fit.data.n_obs,
        "n_groups": fit.data.n_groups,
        "dropped_rows": int(meta.get("dropped_rows", 0) or 0),
        "scale_random_effects": list(fit.data.z_scale_names),
        "priors": fit.priors.describe(),
        "settings": {
            "chains": s.chains, "warmup": s.warmup, "draws": s.draws, "target_accept": s.target_accept,
            "max_tree_depth": s.max_tree_depth, "seed": fit.seed, "threshold": threshold,
            "chain_workers": int(fit.extra.get("chain_workers", 1)),  # chains run in this many parts at once
            # sampled as (y - shift) / scale, results mapped back (None: as given); model.response_scale
            "response_scaling": fit.extra.get("response_scaling"),
        },
        "timings_s": {"compile": fit.compile_s, "sampling": fit.sample_s},
        "diagnostics": {
            "converged": fit.converged,
            "rhat_max": fit.rhat_max,
            "ess_bulk_min": fit.ess_bulk_min,
            "divergences": fit.divergences,
            "rhat_worst": fit.verdict.rhat_worst,
            "ess_worst": fit.verdict.ess_worst,
            "worst_param": fit.verdict.worst_param,
            "draws_used": fit.draws_used,
            "extensions": fit.extensions,
            "warmup_divergences": int(fit.tree["sample_stats"].attrs.get("warmup_divergences", 0)),
        },
        "n_flagged": int(table["flagged"].sum()),
        "versions": {"simstudy": __version__, "jax": jax.__version__, "numpyro": numpyro.__version__,
                     "arviz": version("arviz")},
        "environment": environment_record(),
    }
    if loo is not None:
        k = np.asarray(loo.pareto_k).ravel()
        info["loo"] = {"elpd_loo": float(loo.elpd), "se": float(loo.se), "p_loo": float(loo.p),
                       "pareto_k_bad": int(np.sum(k > PARETO_K_BAD)), "pareto_k_max": float(np.nanmax(k))}
    if waic is not None:
        info["waic"] = dict(waic)
    if extra:
        info.update(extra)
    return _jsonable(info)


def _summary_csv_table(fit) -> pd.DataFrame:
    frames = []
    sections = summary_sections(fit)
    names = {title: var for var, title in _SECTIONS}
    for title, rows in sections.items():
        rows = rows.copy()
        rows.insert(0, "section", names[title])
        rows.insert(1, "term", rows.index)
        rows.index = [names[title] if t == names[title] else f"{names[title]}[{t}]" for t in rows.index]  # pi: scalar
        frames.append(rows)
    table = pd.concat(frames)
    table.index.name = "parameter"
    return table


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_fit_dir(fit, out, *, threshold: float = 0.75, plots: bool = False, loo=None, waic=None,
                  data_file=None, extra: dict | None = None) -> dict[str, Path]:
    """Write a fit directory atomically: every file goes into a temporary sibling directory
    that is renamed to ``out`` at the end (an earlier ``out`` is replaced only then).

    Files: ``posterior.nc`` (DataTree with ``posterior``, ``sample_stats`` and
    ``log_likelihood``), ``groups.csv``, ``summary.csv``, ``fit.json`` and, with ``plots``,
    ``pip.png``, ``funnel.png``, ``outcome.png``, ``trace.png``, ``rank.png``. Returns name -> final path.
    """
    from ..fsutil import check_free_space

    out = Path(out)
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    fit.add_log_likelihood()
    need = posterior_nc_bytes(fit) + (5 << 20 if plots else 0) + (1 << 20)
    # before anything is written: a write that fills the disk can crash h5py instead of raising
    check_free_space(parent, need, f"posterior.nc to {out}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    current = "posterior.nc"
    try:
        tmp.chmod(0o777 & ~_umask())
        written = {}
        _write_bytes(tmp / "posterior.nc", _netcdf_bytes(fit))
        written["posterior"] = "posterior.nc"
        current = "groups.csv, summary.csv"
        # labels a spreadsheet would run as formulas get a leading quote (csvsafe)
        groups = groups_csv_table(fit, threshold)
        name = str(fit.data.group_name or "group")
        if name not in groups.columns:  # the data's own name for the grouping column (e.g. school_id)
            groups = groups.rename(columns={"group": name})
        spreadsheet_safe(groups).to_csv(tmp / "groups.csv", index=False)
        written["groups"] = "groups.csv"
        spreadsheet_safe(_summary_csv_table(fit)).to_csv(tmp / "summary.csv")
        written["summary"] = "summary.csv"
        if plots:
            from .plots import save_fit_plots

            current = "the plots"
            for name, path in save_fit_plots(fit, tmp, threshold).items():
                written[name] = path.name
            if hasattr(fit, "tree"):  # sampler diagnostics of the hyperparameters
                from .plots import save_trace_rank

                for name, path in save_trace_rank(fit, tmp).items():
                    written[name] = path.name
        current = "fit.json"
        info = fit_info(fit, threshold=threshold, loo=loo, waic=waic, data_file=data_file, extra=extra)
        info["files"] = sorted(written.values()) + ["fit.json"]
        (tmp / "fit.json").write_text(json.dumps(info, indent=2) + "\n")
        written["fit"] = "fit.json"
        if out.exists():
            old = parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        from ..fsutil import DiskFullError, disk_full_message, is_disk_full

        if isinstance(exc, Exception) and not isinstance(exc, DiskFullError) and is_disk_full(exc):
            raise DiskFullError(disk_full_message(parent, f"{current} to {out}", need)
                                + "; nothing was written (the partial files were removed)") from None
        raise
    return {name: out / fname for name, fname in written.items()}


def posterior_nc_bytes(fit) -> int:
    """Size of ``posterior.nc`` before compression: every array of the fit's DataTree."""
    try:
        return int(sum(node.to_dataset().nbytes for node in fit.tree.subtree))
    except Exception:  # noqa: BLE001 - an estimate only
        return 0


def _netcdf_bytes(fit) -> bytes:
    """``posterior.nc`` serialised in memory: the file is then written with plain Python I/O,
    where a full disk is an ``OSError`` (h5py writing to a full disk itself may crash)."""
    import io

    buf = io.BytesIO()
    fit.to_netcdf(buf)
    return buf.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


# =============================================================================== commands
def load_fit_dir(path):
    """``(DataTree, fit.json dict or {})`` from a directory written by ``simstudy fit --out``."""
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise FitInputError(f"fit directory {str(path)!r} does not exist")
    nc = path / "posterior.nc" if path.is_dir() else path
    if not nc.is_file():
        raise FitInputError(f"{str(path)!r} has no posterior.nc; give directories written by `simstudy fit --out`")
    try:
        tree = xr.open_datatree(nc, engine="h5netcdf")
        tree = tree.load()
        tree.close()
    except Exception as exc:
        raise FitInputError(f"cannot read {str(nc)!r}: {exc}") from None
    if "log_likelihood" not in tree.children:
        raise FitInputError(f"{str(nc)!r} has no log_likelihood group; refit with `simstudy fit --out`")
    info = {}
    if path.is_dir() and (path / "fit.json").is_file():
        try:
            info = json.loads((path / "fit.json").read_text())
        except (OSError, json.JSONDecodeError):
            info = {}
    return tree, info


