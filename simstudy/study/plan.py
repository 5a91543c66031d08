"""What a design will cost before any fitting: cells, tasks, fits, memory per task, and an
estimated wall time and core-hours on N workers (``simstudy plan``; printed by ``simstudy run``).

Counts are exact: cells and tasks from the design, data sets = cells x replicates, fits =
data sets x methods (a comparator-only method such as the two-stage HLM is a fit too; it
costs no MCMC), memory per task from :func:`simstudy.study.limits.largest_task`.

Time model
----------
One task (a cell x a block of ``b`` replicates) costs, on one worker (one core)::

    T_task = b * (gen + hlm + s * C * (W + D + x * D) + (1 + x) * p + score) + WRITE_S
             (+ compile, see below)

with ``C`` chains, ``W`` warm-up and ``D`` draws (the design's), ``s`` the sampling seconds per
chain-iteration, ``p`` the seconds of building a fit's result (R-hat, ESS, PIPs; again after each extension), ``gen`` /
``hlm`` / ``score`` the seconds per data set of generating, of the two-stage HLM (only when
the design runs it) and of scoring, and ``x`` the expected number of extensions per fit
(each extension adds ``D`` draws per chain; :data:`EXTENSION_RATE` = 0.27 by default, the
quickstart's 13 of 48 fits extended once; ``--extension-rate``).

``s``, ``p``, ``gen``, ``hlm``, ``score`` and the compile time come from a *calibration*: one
data set of the cell is fitted with the design's NUTS settings but one chain (chains run one
after another inside the compiled program, so the cost is per chain), at most
:data:`CAL_WARMUP` warm-up iterations and :data:`CAL_DRAWS` draws, and the cost per
chain-iteration is extrapolated to the design's chains x (warm-up + draws). Only the corner shapes of
each *cost class* (cells that differ only in J and n; a class fixes the likelihood path,
covariates, correlation, layout, size distribution, target_accept, tree depth and a Beta
``pi``) are calibrated: smallest and largest J at the smallest and largest n (two fits when n
is fixed). The shapes in between are interpolated linearly in J at each calibrated n, then
linearly in n, following the known scaling of one gradient: O(J) on the sufficient-statistics
path (groups whose scale design is constant within the group), O(J n) = O(N) on the
per-observation path (a within-group scale covariate). J and n also change the NUTS steps per
iteration (the paper design's J = 300, n = 150 costs 18x J = 50, n = 50 per iteration, not 6x),
which is why n is calibrated too rather than assumed free. Calibrations are cached per machine in a JSON file
(:func:`cache_path`: ``$SIMSTUDY_PLAN_CACHE``, else ``~/.cache/simstudy/plan_calibration.json``)
keyed by CPU model, core count, simstudy/JAX/NumPyro versions, a hash of the model package's
source (so a faster sampler invalidates them) and the shape, so a second plan fits nothing.

Compilation: one program per distinct compiled shape (``Task.shape_key``; on the
per-observation path with ragged group sizes one per data set) and, when extensions are
expected, one extension program per shape. The first worker to start a shape compiles it; a
worker starting it before that compile finished compiles it too; later ones load it from the
shared persistent cache (:data:`CACHE_LOAD_FRACTION` of a compile). Compile times are cold
(the calibration bypasses the persistent cache): a rerun on a warm cache is faster.

Wall time: the tasks, in the runner's submission order (``design.tasks()``: grouped by shape,
small first), are list-scheduled onto ``workers`` single-threaded workers (each task to the
worker free first), plus :data:`START_S` for the cluster and the workers' imports.
Core-hours: the workers' busy time. What the model leaves out: differences in NUTS steps per
iteration between cells of one shape (the effect sizes, ``pi``, the prior) and between the
short calibration run and the full run, other load on the machine (a calibration on a busy
machine errs high), and, for ``--cluster slurm/pbs``, that the cluster's cores are not this
machine's.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .grid import Cell, Design, Task

__all__ = [
    "CAL_WARMUP",
    "CAL_DRAWS",
    "EXTENSION_RATE",
    "START_S",
    "WRITE_S",
    "CACHE_LOAD_FRACTION",
    "PlanError",
    "ShapeCost",
    "Plan",
    "plan_design",
    "likelihood_path",
    "cost_class",
    "problem_size",
    "cache_path",
    "machine_info",
    "calibration_key",
    "effective_workers",
    "format_plan",
    "CALIBRATION_FITS",
]

#: at most this many warm-up iterations and draws in a calibration fit (one chain). The early
#: warm-up (small step sizes, long trajectories) costs more per iteration than the rest, so a
#: short calibration overstates the cost per iteration: 100 + 100 iterations cost ~2x as much
#: per iteration as 500 + 500 (J = 60), and 500 + 200 ~1.6x as much as 1000 + 1000 (paper
#: study 1, J = 50 and 300). With the design's own warm-up (up to 1000) and up to 500 draws the
#: calibration is at most 1500 iterations of one chain and errs high by about 10% there.
CAL_WARMUP = 1000
CAL_DRAWS = 500
#: expected extensions per fit (the quickstart: 13 of 48 fits extended once, none twice)
EXTENSION_RATE = 0.27
#: seconds to start the cluster, create the store and import JAX/NumPyro in the workers (once per
#: run; the quickstart spent 7 s outside its tasks loop, and a worker imports JAX in its first task)
START_S = 15.0
#: seconds per task of writing its block to the store and reporting back
WRITE_S = 0.3
#: loading a compiled program from the persistent cache, as a share of compiling it
CACHE_LOAD_FRACTION = 0.1
#: seed of the calibration data sets and fits (any: only the timing is kept)
CAL_SEED = 20261201
#: calibration fits made in this process (tests check that a cached plan makes none)
CALIBRATION_FITS = 0
_CACHE_VERSION = 1
_COMPILE_SEEN: dict[tuple, float] = {}  # compiled program -> compile seconds measured in this process


class PlanError(ValueError):
    """Bad input to a plan (workers < 1, a negative extension rate, ...); the message names
    the option and the fix."""


# ----------------------------------------------------------------------------- shapes
def likelihood_path(settings: dict) -> str:
    """``"sufficient"`` when every group's scale design is constant within the group (the
    likelihood reduces to per-group sufficient statistics, cost O(J) per gradient), else
    ``"per_observation"`` (O(N)): a within-group covariate in the scale (``covariates``
    cross-sectionally, ``scale_time`` longitudinally)."""
    if settings.get("layout", "cross_sectional") == "longitudinal":
        return "per_observation" if settings.get("scale_time") else "sufficient"
    return "per_observation" if settings.get("covariates") else "sufficient"


def _beta_pi(settings: dict) -> bool:
    return isinstance(settings.get("pi"), str)


def cost_class(settings: dict) -> tuple:
    """What fixes the cost of one gradient and the NUTS geometry apart from J and n: cells
    of one class are interpolated in :func:`problem_size`."""
    keys = ("layout", "covariates", "correlated", "size_dist", "location_random_slope", "scale_time",
            "target_accept", "max_tree_depth")
    return (likelihood_path(settings),) + tuple((k, settings.get(k)) for k in keys) + (("beta_pi", _beta_pi(settings)),)


def _mean_size(settings: dict) -> float:
    """Nominal observations per group (the mean of the size distribution)."""
    n = float(settings.get("group_size") or 1)
    dist = settings.get("size_dist", "balanced")
    lo, hi = settings.get("size_min"), settings.get("size_max")
    if dist == "uniform" and lo and hi:
        return (float(lo) + float(hi)) / 2
    return n


def problem_size(settings: dict) -> float:
    """The size the cost of one gradient grows with: J (sufficient statistics) or J x n
    (per observation)."""
    J = float(settings.get("n_groups") or 1)
    return J if likelihood_path(settings) == "sufficient" else J * _mean_size(settings)


def _shape(settings: dict, cal: dict) -> dict:
    """The calibration shape of a cell: its cost class, J, n and the calibration run."""
    keys = ("n_groups", "group_size", "size_dist", "size_min", "size_max", "covariates", "correlated", "layout",
            "location_random_slope", "scale_time", "target_accept", "max_tree_depth")
    out = {k: settings.get(k) for k in keys}
    out.update(path=likelihood_path(settings), beta_pi=_beta_pi(settings), cal_chains=cal["chains"],
               cal_warmup=cal["warmup"], cal_draws=cal["draws"])
    return out


# ----------------------------------------------------------------------------- calibration records
@dataclass(frozen=True)
class ShapeCost:
    """Calibration figures of one shape (seconds; per data set unless said otherwise)."""

    key: str
    shape: dict
    size: float  # problem_size of the shape
    sample_s_per_iter: float  # sampling, per chain-iteration
    post_s: float  # building the result (R-hat, ESS, PIPs), per fit or extension
    compile_s: float  # compiling the sampler (cold)
    generate_s: float
    hlm_s: float
    score_s: float
    fit_s: float = 0.0  # wall time of the calibration fit (compile included)
    machine: str = ""
    measured_at: str = ""
    cached: bool = False  # read from the cache (False: measured for this plan)

    def describe(self, keys: tuple[str, ...] = ()) -> str:
        """One line: the shape (:func:`shape_label`, ``keys`` the settings that tell the plan's
        shapes apart) and its figures."""
        where = "cached" if self.cached else "measured now"
        return (f"{shape_label(self.shape, keys)}: "
                f"{1e3 * self.sample_s_per_iter:.3g} ms per chain-iteration, compile {self.compile_s:.1f} s, "
                f"result {1e3 * self.post_s:.0f} ms, generate {1e3 * self.generate_s:.0f} ms, "
                f"hlm {1e3 * self.hlm_s:.0f} ms, score {1e3 * self.score_s:.0f} ms [{where} {self.measured_at}]")


#: shape settings besides J and n that can tell two calibration shapes apart (their cost classes)
_LABEL_KEYS = ("beta_pi", "size_dist", "size_min", "size_max", "covariates", "correlated", "layout",
               "location_random_slope", "scale_time", "target_accept", "max_tree_depth")


def distinguishing_keys(shapes) -> tuple[str, ...]:
    """The settings of :data:`_LABEL_KEYS` whose values differ among ``shapes`` (dicts)."""
    shapes = list(shapes)
    return tuple(k for k in _LABEL_KEYS if len({repr(sh.get(k)) for sh in shapes}) > 1)


def shape_label(shape: dict, keys: tuple[str, ...] = ()) -> str:
    """``J=30 n=20 (sufficient)``, with ``keys`` added (``pi ~ Beta`` for ``beta_pi``), so that
    shapes of one plan that differ in more than J and n are told apart."""
    extra = []
    for k in keys:
        v = shape.get(k)
        extra.append(("pi ~ Beta" if v else "pi fixed") if k == "beta_pi" else f"{k}={v}")
    path = str(shape.get("path", "")).replace("_", "-")
    return f"J={shape.get('n_groups')} n={shape.get('group_size')} ({'; '.join([path] + extra)})"


def machine_info() -> dict:
    """What the calibration cache is keyed by on this machine: CPU model and usable cores."""
    from ..model.chains import usable_cores

    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model or platform.processor() or platform.machine(), "cores": usable_cores()}


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    out = {"simstudy": __version__, "model_source": _model_source_hash()}
    for pkg in ("jax", "numpyro"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:  # pragma: no cover
            out[pkg] = ""
    return out


def _model_source_hash() -> str:
    """sha256 of the model package's source (sampler, likelihood, results): a change there
    (e.g. a faster likelihood) invalidates the calibrations even when the version is unchanged."""
    digest = hashlib.sha256()
    folder = Path(__file__).resolve().parents[1] / "model"
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def calibration_key(shape: dict, machine: dict | None = None, versions: dict | None = None) -> str:
    """The cache key of a shape's calibration on this machine (sha256 of the canonical JSON)."""
    content = {"machine": machine or machine_info(), "versions": versions or _versions(), "shape": shape,
               "format": _CACHE_VERSION}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:32]


def cache_path() -> Path:
    """``$SIMSTUDY_PLAN_CACHE``, else ``~/.cache/simstudy/plan_calibration.json``."""
    env = os.environ.get("SIMSTUDY_PLAN_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "simstudy" / "plan_calibration.json"


def _read_cache(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict) or raw.get("format") != _CACHE_VERSION or not isinstance(raw.get("entries"), dict):
        return {}
    return raw["entries"]


def _write_cache(path: Path, entries: dict) -> None:
    """Atomic rewrite (a concurrent reader sees the old or the new file, never half of one);
    a cache that cannot be written only costs a recalibration next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": _CACHE_VERSION, "entries": entries}, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass


def _from_entry(entry: dict) -> ShapeCost | None:
    try:
        fields = {k: entry[k] for k in ShapeCost.__dataclass_fields__ if k in entry and k != "cached"}
        return ShapeCost(**fields, cached=True)
    except TypeError:
        return None


def _calibration_settings(mcmc: dict) -> dict:
    """One chain (chains run one after another in the compiled program, so the cost is per
    chain), the design's warm-up up to :data:`CAL_WARMUP` and draws up to :data:`CAL_DRAWS`."""
    return {"chains": 1, "warmup": min(int(mcmc["warmup"]), CAL_WARMUP), "draws": min(int(mcmc["draws"]), CAL_DRAWS)}


def measure_shape(cell: Cell, cal: dict, key: str, machine: dict) -> ShapeCost:
    """One calibration: generate a data set of ``cell``, time the two-stage HLM on it, fit
    it with the cell's NUTS settings for ``cal`` chains/warm-up/draws (persistent
    compilation cache off, so the compile time is a cold one) and score the fit."""
    global CALIBRATION_FITS
    import jax

    from ..model.sampler import batch_key, fit_batch
    from .generate import generate
    from .scoring import score_fit
    from .task import centered_location_for

    spec = cell.generator_spec()
    t0 = time.perf_counter()
    data, truth = generate(spec, CAL_SEED)
    gen_s = time.perf_counter() - t0
    hlm_s = _time_hlm(data)
    mcmc = cell.mcmc
    _warm_diagnostics()
    previous = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a short chain's diagnostics may warn (all-NaN slices, ...)
            t0 = time.perf_counter()
            fit = fit_batch([data], cell.priors(), seeds=[CAL_SEED], chains=cal["chains"],
                            warmup=cal["warmup"], draws=cal["draws"], target_accept=float(mcmc["target_accept"]),
                            max_tree_depth=int(mcmc["max_tree_depth"]), centered_location=centered_location_for(spec),
                            pip_diagnostics=False)[0]
            fit_s = time.perf_counter() - t0
            CALIBRATION_FITS += 1
            t0 = time.perf_counter()
            score_fit(fit, truth, data.n_groups, n_methods=1)
            score_s = time.perf_counter() - t0
    finally:
        jax.config.update("jax_enable_compilation_cache", previous)
    chains = cal["chains"]
    post = max(0.0, fit_s - fit.compile_s - fit.sample_s)
    # the same program may have been compiled earlier in this process (a recalibration, or
    # another n on the sufficient-statistics path, whose arrays depend on J only): its
    # compile time is the one measured then
    program = (batch_key(data, cell.priors(), centered_location=centered_location_for(spec)),
               tuple(sorted(cal.items())), float(mcmc["target_accept"]), int(mcmc["max_tree_depth"]))
    compile_s = float(fit.compile_s) or _COMPILE_SEEN.get(program, 0.0)
    _COMPILE_SEEN.setdefault(program, compile_s)
    return ShapeCost(
        key=key, shape=_shape(cell.settings, cal), size=problem_size(cell.settings),
        sample_s_per_iter=fit.sample_s / (chains * (cal["warmup"] + cal["draws"])),
        post_s=post, compile_s=compile_s, generate_s=gen_s,
        hlm_s=hlm_s, score_s=score_s, fit_s=fit_s, machine=f"{machine['cpu']}, {machine['cores']} cores",
        measured_at=time.strftime("%Y-%m-%d %H:%M", time.gmtime()) + " UTC",
    )


def _warm_diagnostics() -> None:
    """ArviZ's first R-hat/ESS call in a process costs ~0.5 s of one-off set-up; pay it
    before timing so the per-fit result cost is not overstated (a worker pays it once)."""
    import numpy as np

    from ..model.result import batch_diagnostics

    draws = np.random.default_rng(0).standard_normal((1, 2, 20, 1))
    batch_diagnostics({"beta": draws, "eta": draws, "tau": draws}, pips=False)


# ----------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Plan:
    """What a design will cost (see the module docstring for the model)."""

    design: str
    cells: int
    tasks: int
    datasets: int
    methods: tuple[str, ...]
    fits: int  # data sets x methods
    mcmc_fits: int  # data sets fitted by MCMC (0 for a comparator-only design)
    memory_per_task_bytes: int
    memory_note: str
    workers: int
    cluster: str
    compiled_shapes: int
    extension_rate: float
    #: seconds and core-hours; None when some shape has no calibration (``calibrate=False``
    #: without a cache entry)
    est_wall_s: float | None = None
    est_core_hours: float | None = None
    est_compile_s: float | None = None  # core-seconds spent compiling
    est_sampling_s: float | None = None  # core-seconds sampling, extensions included
    est_task_s_max: float | None = None  # the longest task (a lower bound of the wall time)
    calibration: tuple[ShapeCost, ...] = ()
    calibrated_now: int = 0
    calibration_s: float = 0.0
    uncalibrated: tuple[str, ...] = ()
    cache: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["calibration"] = [asdict(c) for c in self.calibration]
        return d


def effective_workers(cluster: str, workers: int | None, n_tasks: int) -> int:
    """The worker processes a run would use: ``workers`` (default: the CPUs here, at most one
    per task) locally; jobs x processes per job on SLURM/PBS (jobqueue configuration)."""
    from ..model.chains import usable_cores

    if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
        raise PlanError(f"workers must be at least 1, got {workers}; pass --workers N with N >= 1")
    if cluster == "local":
        return int(workers) if workers else max(1, min(usable_cores(), max(1, n_tasks)))
    if cluster in ("slurm", "pbs"):
        from .cluster import _jobqueue_settings

        procs = int(_jobqueue_settings(cluster).get("processes") or 1)
        return (int(workers) if workers else 1) * max(1, procs)
    if "://" in cluster:
        if not workers:
            raise PlanError(f"--cluster {cluster}: say how many workers the scheduler has with --workers N")
        return int(workers)
    raise PlanError(f"--cluster {cluster!r}: use local, slurm, pbs or a scheduler address such as tcp://host:8786")


_FIGURES = ("sample_s_per_iter", "post_s", "compile_s", "generate_s", "hlm_s", "score_s")
#: figures that grow with the data (compile time does not)
_SCALING = ("sample_s_per_iter", "post_s", "generate_s", "hlm_s", "score_s")


def _line(points: list[tuple[float, dict]], x: float, proportional: bool) -> dict:
    """Figures at ``x``, linear between the points (extrapolated from the two nearest
    outside them; from one point proportional to ``x`` when ``proportional``, else equal)."""
    pts = sorted(points, key=lambda p: p[0])
    xs = sorted({p[0] for p in pts})
    if len(xs) == 1:
        x0, f0 = pts[0]
        ratio = x / x0 if proportional and x0 > 0 else 1.0
        return {k: f0[k] * (ratio if k in _SCALING else 1.0) for k in _FIGURES}
    lo, hi = pts[0], pts[-1]
    for a, b in zip(pts, pts[1:]):
        if a[0] <= x <= b[0] and b[0] > a[0]:
            lo, hi = a, b
            break
    else:
        lo, hi = (pts[-2], pts[-1]) if x > pts[-1][0] else (pts[0], pts[1])
    w = (x - lo[0]) / (hi[0] - lo[0])
    # costs stay positive when extrapolating far below the smallest calibrated shape
    return {k: max(lo[1][k] + w * (hi[1][k] - lo[1][k]), 0.1 * min(lo[1][k], hi[1][k])) for k in _FIGURES}


def _interpolate(costs: list[ShapeCost], settings: dict) -> dict:
    """Per-data-set figures of a cell from its class's calibrated shapes: linear in J at
    each calibrated group size (the cost of a gradient is linear in J on both paths), then
    linear in n between those group sizes (exact for costs of the form a + bJ + cn + dJn).
    From a single J the figures scale in proportion to J; from a single n, in proportion to n
    on the per-observation path (O(N) per gradient) and not at all on the sufficient one."""
    J, n = float(settings.get("n_groups") or 1), _mean_size(settings)
    rows: dict[float, list[tuple[float, dict]]] = {}
    for c in costs:
        fig = {k: getattr(c, k) for k in _FIGURES}
        rows.setdefault(float(_mean_size(c.shape)), []).append((float(c.shape["n_groups"]), fig))
    at_j = [(n_k, _line(pts, J, proportional=True)) for n_k, pts in rows.items()]
    return _line(at_j, n, proportional=likelihood_path(settings) == "per_observation")


def _corner_cells(cells: list[Cell]) -> list[Cell]:
    """The cells calibrated for a class: the corners (smallest/largest J x smallest/largest
    n), each the class's cell nearest to it (log scale); one to four distinct cells."""
    Js = [float(c.get("n_groups")) for c in cells]
    ns = [_mean_size(c.settings) for c in cells]
    picks: list[Cell] = []
    for jc in (min(Js), max(Js)):
        for nc in (min(ns), max(ns)):
            best = min(cells, key=lambda c: (abs(math.log(float(c.get("n_groups")) / jc))
                                             + abs(math.log(_mean_size(c.settings) / nc))))
            if all(best.get("n_groups") != p.get("n_groups") or _mean_size(best.settings) != _mean_size(p.settings)
                   for p in picks):
                picks.append(best)
    return picks


def _compile_units(task: Task) -> tuple[list[tuple], int]:
    """The compiled programs a task needs: ``([program key], programs per data set)``; ragged
    per-observation data sets each have their own shape."""
    s = task.cell.settings
    if likelihood_path(s) == "per_observation" and s.get("size_dist", "balanced") != "balanced":
        return [], 1
    return [task.shape_key + (("beta_pi", _beta_pi(s)),)], 0


def plan_design(design: Design, workers: int | None = None, *, cluster: str = "local", calibrate: bool = True,
                tasks: list[Task] | None = None, extension_rate: float | None = None, recalibrate: bool = False,
                cache: str | Path | None = None, progress=None) -> Plan:
    """The plan of ``design`` (or of ``tasks``, e.g. the ones a resumed run still has to do)
    on ``workers`` workers of ``cluster``.

    ``calibrate``: fit the shapes the cache lacks (a few seconds of compile each); False: use
    the cache only, leaving the time estimate None when a shape is missing. ``recalibrate``:
    measure every shape again. ``extension_rate``: expected extensions per fit (default
    :data:`EXTENSION_RATE`). ``progress``: optional ``callable(str)`` told about each
    calibration fit. Calibrate in a process set up as a worker is (one XLA thread:
    :func:`simstudy.study.cluster.worker_env` in the environment before JAX starts, as
    ``simstudy plan`` does); multi-threaded XLA on a busy machine measured up to ~10x slower."""
    from .limits import largest_task

    rate = EXTENSION_RATE if extension_rate is None else extension_rate
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate < 0:
        raise PlanError(f"extension rate must be a number >= 0 (expected extensions per fit), got {rate!r}")
    all_tasks = design.tasks() if tasks is None else list(tasks)
    n_workers = effective_workers(cluster, workers, len(all_tasks))
    methods = tuple(design.methods)
    mcmc_on = "ss_melsm" in methods
    datasets = sum(len(t.replicates) for t in all_tasks)
    cells = len({t.cell.cell_id for t in all_tasks})
    mem = largest_task(design)
    max_ext = int(design.mcmc.get("max_extensions", 0) or 0)
    rate = min(float(rate), float(max_ext)) if mcmc_on else 0.0
    programs = {k for t in all_tasks for k in _compile_units(t)[0]} if mcmc_on else set()
    n_programs = len(programs) + (sum(len(t.replicates) for t in all_tasks if _compile_units(t)[1]) if mcmc_on else 0)
    base = dict(design=design.name, cells=cells, tasks=len(all_tasks), datasets=datasets, methods=methods,
                fits=datasets * len(methods), mcmc_fits=datasets if mcmc_on else 0,
                memory_per_task_bytes=mem.bytes, memory_note=f"largest task: cell ({mem.label}); {mem.explain()}",
                workers=n_workers, cluster=cluster, compiled_shapes=n_programs, extension_rate=rate)
    path = Path(cache).expanduser() if cache is not None else cache_path()
    if not all_tasks:
        return Plan(**base, est_wall_s=0.0, est_core_hours=0.0, est_compile_s=0.0, est_sampling_s=0.0,
                    est_task_s_max=0.0, cache=str(path))

    # the shapes to calibrate: the J x n corners of each cost class
    by_class: dict[tuple, list[Cell]] = {}
    for t in all_tasks:
        by_class.setdefault(cost_class(t.cell.settings), [])
        if t.cell not in by_class[cost_class(t.cell.settings)]:
            by_class[cost_class(t.cell.settings)].append(t.cell)
    machine, versions = machine_info(), _versions()
    entries = _read_cache(path)
    wanted: dict[tuple, list[tuple[Cell, dict, str]]] = {}
    for cls, cls_cells in by_class.items():
        shapes = [(c, _shape(c.settings, _calibration_settings(c.mcmc))) for c in _corner_cells(cls_cells)]
        wanted[cls] = [(c, sh, calibration_key(sh, machine, versions)) for c, sh in shapes]

    t_cal = time.perf_counter()
    keys = distinguishing_keys(sh for picks in wanted.values() for _, sh, _ in picks)
    todo = {k for picks in wanted.values() for _, _, k in picks if recalibrate or k not in entries}
    costs: dict[tuple, list[ShapeCost]] = {}
    uncalibrated, measured = [], 0
    dirty = False
    for cls, picks in wanted.items():
        costs[cls] = []
        for cell, shape, key in picks:
            entry = None if recalibrate else (_from_entry(entries[key]) if key in entries else None)
            if entry is None and calibrate and mcmc_on:
                if progress is not None:
                    progress(f"plan: calibrating shape {measured + 1}/{len(todo)}, {shape_label(shape, keys)}: "
                             f"{shape['cal_chains']} chain x ({shape['cal_warmup']} + {shape['cal_draws']}) iterations")
                entry = measure_shape(cell, _calibration_settings(cell.mcmc), key, machine)
                entries[key] = {k: v for k, v in asdict(entry).items() if k != "cached"}
                measured += 1
                dirty = True
            elif entry is None and not mcmc_on:  # no MCMC: a data set and an HLM, cheap
                entry = _measure_comparators(cell, key, shape)
                measured += 1
            if entry is None:
                uncalibrated.append(shape_label(shape, keys))
            else:
                costs[cls].append(entry)
    if dirty:
        _write_cache(path, entries)
    cal_s = time.perf_counter() - t_cal
    shown = tuple(c for cls in costs for c in costs[cls])
    base.update(calibration=shown, calibrated_now=measured, calibration_s=cal_s, cache=str(path))
    if uncalibrated:
        return Plan(**base, uncalibrated=tuple(uncalibrated))
    return _estimate(design, all_tasks, costs, base, rate, n_workers, mcmc_on)


def _time_hlm(data) -> float:
    """Seconds of one two-stage HLM on ``data``, timed on a second call: the first imports
    SciPy's optimiser and statsmodels (seconds, once per worker, not per data set)."""
    from ..methods.hlm import hlm

    def once() -> float:
        t0 = time.perf_counter()
        try:
            hlm(data, CAL_SEED)
        except Exception:  # noqa: BLE001 - a data set the HLM cannot fit still costs its time
            pass
        return time.perf_counter() - t0

    once()
    return once()


def _measure_comparators(cell: Cell, key: str, shape: dict) -> ShapeCost:
    """A comparator-only design: time generating and the two-stage HLM only (no JAX)."""
    from .generate import generate

    t0 = time.perf_counter()
    data, _ = generate(cell.generator_spec(), CAL_SEED)
    gen_s = time.perf_counter() - t0
    return ShapeCost(key=key, shape=shape, size=problem_size(cell.settings), sample_s_per_iter=0.0,
                     post_s=0.0, compile_s=0.0, generate_s=gen_s, hlm_s=_time_hlm(data),
                     score_s=0.0, measured_at=time.strftime("%Y-%m-%d %H:%M", time.gmtime()) + " UTC")


def _estimate(design: Design, all_tasks: list[Task], costs: dict, base: dict, rate: float, n_workers: int,
              mcmc_on: bool) -> Plan:
    from ..methods.hlm import COMPARATORS

    hlm_on = any(m in COMPARATORS for m in design.methods)
    per_cell: dict[int, dict] = {}
    for t in all_tasks:
        cid = t.cell.cell_id
        if cid not in per_cell:
            per_cell[cid] = _interpolate(costs[cost_class(t.cell.settings)], t.cell.settings)
    sampling_total = compile_total = 0.0
    # list scheduling in submission order: each task to the worker free first
    free = [(0.0, i) for i in range(n_workers)]
    heapq.heapify(free)
    compiled_at: dict[tuple, float] = {}  # program -> time its first compile finished
    seen_by: dict[int, set] = {i: set() for i in range(n_workers)}
    busy = 0.0
    longest = 0.0
    for t in all_tasks:
        f = per_cell[t.cell.cell_id]
        m = t.cell.mcmc
        b = len(t.replicates)
        C, W, D = int(m["chains"]), int(m["warmup"]), int(m["draws"])
        per_set = f["generate_s"] + (f["hlm_s"] if hlm_on else 0.0)
        sampling = 0.0
        if mcmc_on:
            sampling = (f["sample_s_per_iter"] * C * (W + D + rate * D) + (1 + rate) * f["post_s"])
            per_set += sampling + f["score_s"]
        work = b * per_set + WRITE_S
        start, w = heapq.heappop(free)
        comp = 0.0
        if mcmc_on:
            keys, per_dataset = _compile_units(t)
            n_prog = 1 + (1 if rate > 0 else 0)  # the sampler (+ the extension program)
            for k in keys:
                if k in seen_by[w]:
                    continue
                seen_by[w].add(k)
                done_at = compiled_at.get(k)
                if done_at is not None and done_at <= start + comp:
                    comp += CACHE_LOAD_FRACTION * f["compile_s"] * n_prog
                else:
                    comp += f["compile_s"] * n_prog
                    compiled_at.setdefault(k, start + comp)
            comp += per_dataset * b * f["compile_s"]
        sampling_total += b * sampling
        compile_total += comp
        dur = work + comp
        longest = max(longest, dur)
        busy += dur
        heapq.heappush(free, (start + dur, w))
    wall = max(t for t, _ in free) + START_S
    notes = [f"extensions: {rate:g} expected per fit (each adds {int(design.mcmc['draws'])} draws per chain; "
             "--extension-rate)" if mcmc_on else "comparator-only design: no MCMC, no compilation"]
    if base["cluster"] != "local":
        notes.append(f"calibrated on this machine; the {base['cluster']} workers' cores may be faster or slower")
    return Plan(**base, est_wall_s=wall, est_core_hours=(busy + n_workers * START_S) / 3600.0,
                est_compile_s=compile_total, est_sampling_s=sampling_total, est_task_s_max=longest,
                notes=tuple(notes))


# ----------------------------------------------------------------------------- text
def _fmt_s(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def format_plan(plan: Plan, brief: bool = False) -> str:
    """The plan as text (``brief``: the few lines ``simstudy run`` prints)."""
    from ..fsutil import fmt_bytes

    methods = ", ".join(plan.methods)
    counts = (f"{plan.cells} cells, {plan.tasks} tasks, {plan.datasets} data sets x {len(plan.methods)} method(s) "
              f"({methods}) = {plan.fits} fits; memory per task {fmt_bytes(plan.memory_per_task_bytes)}")
    if plan.est_wall_s is None:
        time_line = ("time estimate: not calibrated on this machine yet; `simstudy plan DESIGN` calibrates "
                     f"({len(plan.uncalibrated)} shape(s), a short fit each)")
    else:
        time_line = (f"estimated wall time {_fmt_s(plan.est_wall_s)} on {plan.workers} worker(s), "
                     f"{plan.est_core_hours:.2f} core-hours (compile {_fmt_s(plan.est_compile_s or 0)}, "
                     f"{plan.compiled_shapes} compiled shape(s); extensions {plan.extension_rate:g} per fit)")
    if brief:
        return f"plan: {counts}\nplan: {time_line}"
    lines = [
        f"plan for design {plan.design!r}",
        f"  cells              {plan.cells}",
        f"  tasks              {plan.tasks}",
        f"  data sets          {plan.datasets}",
        f"  fits               {plan.fits}  ({plan.datasets} data sets x {len(plan.methods)} method(s): {methods}; "
        f"{plan.mcmc_fits} by MCMC)",
        f"  memory per task    {fmt_bytes(plan.memory_per_task_bytes)}  ({plan.memory_note})",
        f"  compiled shapes    {plan.compiled_shapes}",
        f"  workers            {plan.workers} ({plan.cluster})",
    ]
    if plan.est_wall_s is None:
        lines.append(f"  {time_line}")
        lines += [f"    uncalibrated: {u}" for u in plan.uncalibrated]
    else:
        lines += [
            f"  estimated wall     {_fmt_s(plan.est_wall_s)}  (longest task {_fmt_s(plan.est_task_s_max or 0)})",
            f"  estimated cost     {plan.est_core_hours:.2f} core-hours  (sampling {_fmt_s(plan.est_sampling_s or 0)}, "
            f"compile {_fmt_s(plan.est_compile_s or 0)} of core time)",
        ]
    if plan.calibration:
        made = (f"{plan.calibrated_now} measured now in {plan.calibration_s:.0f} s" if plan.calibrated_now
                else "all cached")
        lines.append(f"  calibration ({made}; cache {plan.cache}):")
        keys = distinguishing_keys(c.shape for c in plan.calibration)
        lines += [f"    {c.describe(keys)}" for c in plan.calibration]
    lines += [f"  note: {n}" for n in plan.notes]
    return "\n".join(lines)
