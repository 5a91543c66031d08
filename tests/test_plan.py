"""`simstudy plan`: exact counts, the time model's scaling, the calibration cache, the CLI."""

import json
import math

import pytest

from simstudy.study import plan as planmod
from simstudy.study.design import load_design, parse_design
from simstudy.study.limits import largest_task
from simstudy.study.plan import PlanError, ShapeCost, plan_design

SMALL = """
seed = 3
replicates = 5
block_size = 2
methods = ["ss_melsm", "hlm"]
[mcmc]
chains = 2
warmup = 40
draws = 60
max_extensions = 1
[generator]
group_size = 8
[model]
correlated = false
[factors]
n_groups = [10, 20, 40]
share_inconsistent = [0.0, 0.1]
[[exclude]]
n_groups = 40
share_inconsistent = 0.0
[[extra]]
n_groups = 40
share_inconsistent = 0.3
"""


def _design(text=SMALL, **top):
    for k, v in top.items():
        text = text.replace(f"\n{k} = ", f"\n{k} = {v}  # was ", 1)
    return parse_design(text)


@pytest.fixture
def fake_measure(monkeypatch, tmp_path):
    """Calibration with known linear costs (no fit): s = 1e-5 * J s per chain-iteration, so
    the estimate's arithmetic can be checked exactly; records the shapes measured."""
    monkeypatch.setenv("SIMSTUDY_PLAN_CACHE", str(tmp_path / "cache.json"))
    calls = []

    def measure(cell, cal, key, machine, compile_s=0.0):
        J = cell.get("n_groups")
        calls.append(J)
        return ShapeCost(key=key, shape=planmod._shape(cell.settings, cal), size=float(J),
                         sample_s_per_iter=1e-5 * J, post_s=0.01, compile_s=compile_s, generate_s=1e-4 * J,
                         hlm_s=2e-4 * J, score_s=0.005)

    monkeypatch.setattr(planmod, "measure_shape", measure)
    return calls


def test_counts_are_exact_for_a_small_design(tmp_path):
    d = _design()
    p = plan_design(d, workers=2, calibrate=False, cache=tmp_path / "none.json")
    # 3 x 2 grid - 1 excluded + 1 extra = 6 cells; 5 replicates in blocks of 2 -> 3 tasks per cell
    assert (p.cells, p.tasks, p.datasets) == (6, 18, 30)
    assert p.fits == 30 * 2 and p.mcmc_fits == 30 and p.methods == ("ss_melsm", "hlm")
    assert p.memory_per_task_bytes == largest_task(d).bytes
    # compiled programs: 3 values of J x 2 block lengths (2 and the last block's 1)
    assert p.compiled_shapes == 6
    # nothing cached and no calibration: counts only, and the message names `simstudy plan`
    assert p.est_wall_s is None and p.calibrated_now == 0 and len(p.uncalibrated) == 2
    assert "simstudy plan" in planmod.format_plan(p, brief=True)


def test_only_smallest_and_largest_shapes_are_calibrated_and_middle_interpolated(fake_measure):
    d = _design()
    p = plan_design(d, workers=1)
    assert sorted(fake_measure) == [10, 40] and p.calibrated_now == 2
    # linear costs are interpolated exactly: the J = 20 cells cost what a J = 20 calibration says
    per_iter = {c.shape["n_groups"]: c.sample_s_per_iter for c in p.calibration}
    assert per_iter == {10: pytest.approx(1e-4), 40: pytest.approx(4e-4)}
    mid = planmod._interpolate(list(p.calibration), {"n_groups": 20, "group_size": 8})
    assert mid["sample_s_per_iter"] == pytest.approx(2e-4, rel=1e-12)
    assert mid["hlm_s"] == pytest.approx(4e-3, rel=1e-12)


def test_j_by_n_designs_calibrate_the_four_corners_and_interpolate_exactly(monkeypatch, tmp_path):
    """J x n: the corners are measured; a cost a + bJ + cn + dJn is recovered exactly inside."""
    monkeypatch.setenv("SIMSTUDY_PLAN_CACHE", str(tmp_path / "cache.json"))
    calls = []
    cost = lambda J, n: 1e-5 + 2e-6 * J + 3e-6 * n + 4e-8 * J * n  # noqa: E731

    def measure(cell, cal, key, machine):
        J, n = cell.get("n_groups"), cell.get("group_size")
        calls.append((J, n))
        return ShapeCost(key=key, shape=planmod._shape(cell.settings, cal), size=float(J),
                         sample_s_per_iter=cost(J, n), post_s=0.0, compile_s=1.0, generate_s=0.0, hlm_s=0.0,
                         score_s=0.0)

    monkeypatch.setattr(planmod, "measure_shape", measure)
    text = SMALL.replace("group_size = 8\n", "").replace("[factors]\n", "[factors]\ngroup_size = [5, 10, 40]\n")
    text = text.split("[[exclude]]")[0]
    p = plan_design(parse_design(text), workers=1)
    assert sorted(calls) == [(10, 5), (10, 40), (40, 5), (40, 40)]
    for J, n in ((20, 10), (10, 10), (40, 20), (20, 5)):
        got = planmod._interpolate(list(p.calibration), {"n_groups": J, "group_size": n})
        assert got["sample_s_per_iter"] == pytest.approx(cost(J, n), rel=1e-12)


def test_doubling_replicates_doubles_the_estimate(fake_measure):
    base, double = _design(replicates=4, block_size=2), _design(replicates=8, block_size=2)
    p1, p2 = plan_design(base, workers=1), plan_design(double, workers=1)
    assert p2.tasks == 2 * p1.tasks and p2.fits == 2 * p1.fits
    assert p2.est_sampling_s == pytest.approx(2 * p1.est_sampling_s, rel=1e-12)
    # one worker, no compile time: wall = start-up + the sum of the tasks
    assert p2.est_wall_s - planmod.START_S == pytest.approx(2 * (p1.est_wall_s - planmod.START_S), rel=1e-12)
    hours = lambda p: p.est_core_hours - p.workers * planmod.START_S / 3600  # noqa: E731
    assert hours(p2) == pytest.approx(2 * hours(p1), rel=1e-12)


def test_halving_workers_doubles_the_wall_time(fake_measure):
    # 8 equal tasks (one cell shape, 16 replicates in blocks of 2)
    text = SMALL.replace("n_groups = [10, 20, 40]", "n_groups = [20]").replace(
        "share_inconsistent = [0.0, 0.1]", "share_inconsistent = [0.1]").split("[[exclude]]")[0]
    d = _design(text, replicates=16, block_size=2)
    p4, p2, p1 = (plan_design(d, workers=w) for w in (4, 2, 1))
    assert p4.tasks == 8
    run = lambda p: p.est_wall_s - planmod.START_S  # noqa: E731
    assert run(p2) == pytest.approx(2 * run(p4), rel=1e-12)
    assert run(p1) == pytest.approx(4 * run(p4), rel=1e-12)
    # the work is the same on any number of workers (start-up once per worker aside)
    assert p2.est_sampling_s == pytest.approx(p4.est_sampling_s, rel=1e-12)
    # 3 workers on 8 tasks: 3 rounds, not 8/3
    assert run(plan_design(d, workers=3)) == pytest.approx(3 * run(p4) / 2, rel=1e-12)


def test_compile_once_per_shape_then_loaded_from_the_cache(fake_measure, monkeypatch):
    """The first task of a shape compiles (sampler + extension program); workers starting it
    later load it (CACHE_LOAD_FRACTION of a compile); a worker that has it pays nothing."""
    def measure(cell, cal, key, machine):
        return planmod.ShapeCost(key=key, shape=planmod._shape(cell.settings, cal), size=float(cell.get("n_groups")),
                                 sample_s_per_iter=1e-3, post_s=0.0, compile_s=10.0, generate_s=0.0, hlm_s=0.0,
                                 score_s=0.0)

    monkeypatch.setattr(planmod, "measure_shape", measure)
    text = SMALL.replace("n_groups = [10, 20, 40]", "n_groups = [20]").replace(
        "share_inconsistent = [0.0, 0.1]", "share_inconsistent = [0.1]").split("[[exclude]]")[0]
    d = _design(text, replicates=8, block_size=2)  # 4 tasks, one shape
    one = plan_design(d, workers=1, extension_rate=0.5)
    assert one.est_compile_s == pytest.approx(2 * 10.0)  # sampler + extension program, once
    none = plan_design(d, workers=1, extension_rate=0.0)
    assert none.est_compile_s == pytest.approx(10.0)
    two = plan_design(d, workers=2, extension_rate=0.0)
    # both workers start at t = 0 before any compile finished: both compile
    assert two.est_compile_s == pytest.approx(20.0)


def test_comparator_only_design_costs_no_mcmc(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMSTUDY_PLAN_CACHE", str(tmp_path / "cache.json"))
    d = parse_design(SMALL.replace('methods = ["ss_melsm", "hlm"]', 'methods = ["hlm", "hlm_z"]'))
    before = planmod.CALIBRATION_FITS
    p = plan_design(d, workers=2, calibrate=False)  # generating + the HLM are timed even then: cheap
    assert planmod.CALIBRATION_FITS == before
    assert p.fits == 2 * p.datasets and p.mcmc_fits == 0 and p.compiled_shapes == 0
    assert p.est_compile_s == 0 and p.est_sampling_s == 0 and p.est_wall_s > planmod.START_S


@pytest.mark.parametrize("covariates", [False, True])
def test_likelihood_path_matches_the_sampler(covariates):
    """The plan's path (sufficient statistics vs per observation) is the one the sampler takes."""
    from simstudy.model.priors import Priors
    from simstudy.model.ssmelsm import structure_for
    from simstudy.study.generate import GeneratorSpec, generate

    spec = GeneratorSpec(n_groups=6, group_size=5, covariates=covariates, x_between_sd=0.5 if covariates else 0.0)
    data, _ = generate(spec, 1)
    sufficient = structure_for(data, Priors()).sufficient
    assert planmod.likelihood_path({"covariates": covariates}) == ("sufficient" if sufficient else "per_observation")
    assert sufficient is (not covariates)


def test_bad_input_is_refused(tmp_path):
    d = _design()
    with pytest.raises(PlanError, match="workers must be at least 1"):
        plan_design(d, workers=0, calibrate=False, cache=tmp_path / "c.json")
    with pytest.raises(PlanError, match="extension rate"):
        plan_design(d, workers=1, calibrate=False, extension_rate=-1, cache=tmp_path / "c.json")
    with pytest.raises(PlanError, match="--workers"):
        plan_design(d, cluster="tcp://127.0.0.1:8786", calibrate=False, cache=tmp_path / "c.json")


# ----------------------------------------------------------------------------- real calibration
@pytest.fixture(scope="module")
def smoke_cache(tmp_path_factory, root):
    """One real (tiny) calibration of designs/smoke.toml: J = 10, one chain x (50 + 50)."""
    path = tmp_path_factory.mktemp("plancache") / "cache.json"
    d = load_design(root / "designs" / "smoke.toml")
    before = planmod.CALIBRATION_FITS
    p = plan_design(d, workers=2, cache=path)
    return path, p, planmod.CALIBRATION_FITS - before


def test_calibration_is_cached_and_reused(smoke_cache, root):
    path, first, fits = smoke_cache
    assert fits == 1 and first.calibrated_now == 1 and path.is_file()
    c = first.calibration[0]
    assert c.sample_s_per_iter > 0 and c.compile_s > 0 and not c.cached
    assert math.isfinite(first.est_wall_s) and first.est_wall_s >= first.est_task_s_max + planmod.START_S
    before = planmod.CALIBRATION_FITS
    again = plan_design(load_design(root / "designs" / "smoke.toml"), workers=2, cache=path)
    assert planmod.CALIBRATION_FITS == before and again.calibrated_now == 0  # no fit the second time
    assert again.calibration[0].cached
    assert again.est_wall_s == pytest.approx(first.est_wall_s, rel=1e-12)


def test_cache_is_invalidated_when_the_key_changes(smoke_cache, root, monkeypatch, tmp_path):
    path, first, _ = smoke_cache
    local = tmp_path / "cache.json"
    local.write_bytes(path.read_bytes())
    d = load_design(root / "designs" / "smoke.toml")
    calls = []
    real = planmod.measure_shape
    monkeypatch.setattr(planmod, "measure_shape", lambda *a: calls.append(a[0].label) or real(*a))
    plan_design(d, workers=2, cache=local)
    assert calls == []  # same machine, versions and shape: cached
    versions = dict(planmod._versions(), model_source="another sampler")
    monkeypatch.setattr(planmod, "_versions", lambda: versions)
    p = plan_design(d, workers=2, cache=local)
    assert len(calls) == 1 and p.calibrated_now == 1  # the model's source changed: measured again
    monkeypatch.setattr(planmod, "machine_info", lambda: {"cpu": "another CPU", "cores": 64})
    plan_design(d, workers=2, cache=local)
    assert len(calls) == 2  # another machine: measured again
    entries = json.loads(local.read_text())["entries"]
    assert len(entries) == 3


def test_cli_plan_on_smoke(smoke_cache, root, monkeypatch):
    from typer.testing import CliRunner

    from simstudy.cli import app

    path, first, _ = smoke_cache
    monkeypatch.setenv("SIMSTUDY_PLAN_CACHE", str(path))
    design = str(root / "designs" / "smoke.toml")
    out = CliRunner().invoke(app, ["plan", design, "--workers", "2", "--json"])
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)
    assert (got["cells"], got["tasks"], got["fits"], got["workers"]) == (2, 2, 4, 2)
    assert got["calibrated_now"] == 0 and got["est_wall_s"] == pytest.approx(first.est_wall_s, rel=1e-9)
    text = CliRunner().invoke(app, ["plan", design, "--workers", "1"], terminal_width=200)
    assert text.exit_code == 0 and "estimated wall" in text.stdout and "core-hours" in text.stdout
    bad = CliRunner().invoke(app, ["plan", design, "--workers", "0"])
    assert bad.exit_code == 2 and "--workers must be at least 1" in bad.output
    missing = CliRunner().invoke(app, ["plan", str(root / "designs" / "nope.toml")])
    assert missing.exit_code == 2 and "no design file" in missing.output


def test_run_prints_the_plan_from_the_cache_only(smoke_cache, root, tmp_path, monkeypatch):
    from simstudy.study.runner import _say_plan

    path, _, _ = smoke_cache
    d = load_design(root / "designs" / "smoke.toml")
    said = []
    before = planmod.CALIBRATION_FITS
    monkeypatch.setenv("SIMSTUDY_PLAN_CACHE", str(path))
    _say_plan(d, d.tasks(), "local", 2, None, said.append)
    assert "estimated wall time" in said[-1] and "4 fits" in said[-1]
    monkeypatch.setenv("SIMSTUDY_PLAN_CACHE", str(tmp_path / "empty.json"))
    _say_plan(d, d.tasks(), "local", 2, None, said.append)
    assert "simstudy plan" in said[-1]
    assert planmod.CALIBRATION_FITS == before  # `run` never calibrates


def test_a_program_compiled_earlier_keeps_its_compile_time(root, tmp_path):
    """On the sufficient-statistics path n does not change the compiled program, so the
    second corner reuses the first one's program; its compile time is still recorded."""
    text = (root / "designs" / "smoke.toml").read_text().replace("group_size = 10\n", "")
    text = text.replace("[factors]\n", "[factors]\ngroup_size = [10, 12]\n")
    # groups that clearly differ: both corners' data choose the centred location program
    text = text.replace("[generator]\n", "[generator]\ntau_u = 1.0\n")
    p = plan_design(parse_design(text), workers=1, cache=tmp_path / "cache.json")
    assert p.calibrated_now == 2
    assert all(c.compile_s > 0 for c in p.calibration)
    assert p.calibration[0].compile_s == p.calibration[1].compile_s
