"""How each documented command is run as a user would run it, with small settings.

One :class:`Recipe` per documented command (``tests/acceptance/test_docs_coverage.py`` fails
when the documents show a command that has no recipe here, or a recipe names a command the
documents no longer show). A recipe runs the command verbatim in a :class:`Workspace` (where
``designs/`` holds the shipped designs at small settings) unless ``run`` says how it is made
small (shorter chains appended, a cluster size of 1, ``sbatch``/``qsub`` replaced by ``bash``
where no scheduler exists), after the files it ``needs`` are made by their own commands, and
checks the exit code, that no traceback was printed, and what the command promises to write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from doc_commands import tokens

#: short chains for single fits (the documents' own settings are 4 x (1000 + 1000))
SMALL_FIT = "--chains 2 --warmup 150 --draws 150"


def _files(*names: str) -> Callable:
    def check(ws, proc) -> None:
        for name in names:
            path = ws.path / name
            assert path.exists(), f"{name} was not written (`{proc.args[-1]}`)\n{proc.stdout[-2000:]}"
            if path.is_file():
                assert path.stat().st_size > 0, f"{name} is empty"
    return check


def _says(*phrases: str, files: tuple[str, ...] = ()) -> Callable:
    def check(ws, proc) -> None:
        text = (proc.stdout + proc.stderr).lower()
        for phrase in phrases:
            assert phrase.lower() in text, f"expected {phrase!r} in the output of `{proc.args[-1]}`:\n{text[-3000:]}"
        _files(*files)(ws, proc)
    return check


def _plan_json(ws, proc) -> None:
    plan = json.loads(proc.stdout)
    assert plan["cells"] >= 1 and plan["fits"] >= plan["cells"], plan


def _job_script(ws, proc) -> None:
    out = proc.stdout
    assert "#SBATCH -t 04:00:00" in out, f"walltime of cluster/jobqueue.yaml not in the job script:\n{out}"
    assert "--lifetime 210m" in out, f"worker lifetime of cluster/jobqueue.yaml not in the job script:\n{out}"


@dataclass(frozen=True)
class Recipe:
    doc: str                      # the command as the documents show it (compared by shell words)
    group: str                    # the test file that runs it: grid, reports, realdata, cluster
    run: str | None = None        # what runs in the workspace (default: the documented command)
    needs: tuple[str, ...] = ()   # workspace paths made first, by the commands in MAKES
    rc: int | tuple[int, ...] = 0
    check: Callable | None = None
    env: dict = field(default_factory=dict)
    covered_by: str | None = None  # a test elsewhere runs this command (it must name the command's script)
    why: str = ""                  # why `run` differs from the documented command

    @property
    def command(self) -> str:
        return self.run or self.doc

    def matches(self, doc_tokens: tuple[str, ...]) -> bool:
        return tokens(self.doc) == doc_tokens


#: cluster/README.md's "Any Dask cluster": a scheduler, workers started with the documented
#: environment and options (1 worker), then the run against the scheduler's address
TCP_RUN = (
    "set -u; port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); "
    "print(s.getsockname()[1])'); "
    ".venv/bin/dask scheduler --host 127.0.0.1 --port $port --no-dashboard >scheduler.log 2>&1 & sched=$!; "
    "export XLA_FLAGS='--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1' OMP_NUM_THREADS=1 "
    "JAX_PLATFORMS=cpu; "
    ".venv/bin/dask worker tcp://127.0.0.1:$port --nworkers 1 --nthreads 1 --memory-limit 2GB >worker.log 2>&1 & "
    "work=$!; "
    "rc=0; .venv/bin/simstudy run designs/paper_study1.toml --store results/tcp.zarr --cluster tcp://127.0.0.1:$port "
    "|| rc=$?; kill $work $sched 2>/dev/null; wait; exit $rc"
)

#: worker jobs on the test node: logs in the workspace, a walltime the test node accepts
SLURM_ENV = {"DASK_JOBQUEUE__SLURM__LOG_DIRECTORY": "dask-logs", "DASK_JOBQUEUE__SLURM__WALLTIME": "00:20:00"}

#: workspace paths that commands need, and the (documented or documented-like) command making each
MAKES = {
    "results/quickstart.zarr": "simstudy run designs/quickstart.toml --store results/quickstart.zarr --workers 2",
    "results/study2.zarr": "simstudy run designs/paper_study2.toml --store results/study2.zarr --workers 2",
    "results/study1.zarr": "simstudy run designs/paper_study1.toml --store results/study1.zarr --workers 2",
    "results/paper_study1.zarr": "simstudy run designs/paper_study1.toml --store results/paper_study1.zarr --workers 2",
    "results/longitudinal_small.zarr":
        "simstudy run designs/longitudinal_small.toml --store results/longitudinal_small.zarr --workers 1",
    "fits/m1": f"simstudy fit data.csv --location 'y ~ 1 + (1 | school)' --scale '~ 1 + (1 | school)' "
               f"--out fits/m1 {SMALL_FIT}",
    "fits/m2": f"simstudy fit data.csv --location 'y ~ x + (1 | school)' --scale '~ x + (1 | school)' "
               f"--out fits/m2 --plots {SMALL_FIT}",
}

RECIPES: list[Recipe] = [
    # ---------------------------------------------------------------- the README's two commands
    Recipe("bash scripts/quickstart.sh", "grid",
           run="DESIGN=$PWD/designs/quickstart.toml STORE=$PWD/results/quickstart.zarr REPORT=$PWD/report/quickstart "
               "bash {root}/scripts/quickstart.sh --workers 2",
           why="the shipped quickstart design at small settings; store and report in the workspace",
           check=_files("results/quickstart.zarr", "report/quickstart/summary.csv", "report/quickstart/report.md")),
    Recipe("bash scripts/test.sh", "grid", covered_by=".ci/run",
           why="the test suite itself: CI runs it through .ci/run"),
    # ---------------------------------------------------------------- studies
    Recipe("simstudy run designs/paper_study2.toml --store results/study2.zarr --workers 2", "grid",
           check=_says("complete", files=("results/study2.zarr",))),
    Recipe("simstudy status results/study2.zarr", "grid", needs=("results/study2.zarr",), check=_says("complete")),
    Recipe("simstudy status results/study2.zarr --verify", "grid", needs=("results/study2.zarr",),
           check=_says("verified")),
    Recipe("simstudy run designs/paper_study2.toml --store results/study2.zarr --repair", "grid",
           needs=("results/study2.zarr",),
           run="rm results/study2.zarr/pip/c/0/0/0 && { simstudy status results/study2.zarr --verify; test $? = 2; } "
               "&& simstudy run designs/paper_study2.toml --store results/study2.zarr --repair "
               "&& simstudy status results/study2.zarr --verify",
           why="a chunk is deleted first (--verify must exit 2), so there is a block to repair; then verified",
           check=_says("is damaged", "verified")),
    Recipe("simstudy plan designs/paper_study1.toml --workers 2", "grid", check=_says("core-hours")),
    Recipe("simstudy plan designs/quickstart.toml --json", "grid", check=_plan_json),
    Recipe("simstudy run designs/longitudinal_small.toml --store results/longitudinal_small.zarr --workers 1", "grid",
           check=_files("results/longitudinal_small.zarr")),
    Recipe("simstudy summarize results/longitudinal_small.zarr --out summary.csv", "grid",
           run="simstudy summarize results/longitudinal_small.zarr --out longitudinal_summary.csv",
           why="another file name, so the quickstart's summary.csv is not overwritten",
           needs=("results/longitudinal_small.zarr",), check=_files("longitudinal_summary.csv")),
    Recipe(".venv/bin/python analysis/comparators_study1.py results/study1.zarr", "grid",
           needs=("results/study1.zarr",)),
    # ---------------------------------------------------------------- reading a store
    Recipe("simstudy summarize results/quickstart.zarr --out summary.csv", "reports",
           needs=("results/quickstart.zarr",), check=_files("summary.csv")),
    Recipe("simstudy summarize results/quickstart.zarr --rule bf", "reports", needs=("results/quickstart.zarr",),
           check=_says("bf")),
    Recipe("simstudy plot results/quickstart.zarr --out figures/", "reports", needs=("results/quickstart.zarr",),
           check=_files("figures/")),
    Recipe("simstudy plot results/quickstart.zarr --metric fpr --metric fwer --out figures/fpr/", "reports",
           needs=("results/quickstart.zarr",), check=_files("figures/fpr/")),
    Recipe("simstudy report results/quickstart.zarr --out report/", "reports", needs=("results/quickstart.zarr",),
           check=_files("report/report.md")),
    # ---------------------------------------------------------------- real data
    Recipe("simstudy generate --seed 1 --set n_groups=100 --out sim1/", "realdata",
           check=_files("sim1/data.csv", "sim1/truth.csv")),
    Recipe("simstudy fit data.csv --location 'y ~ 1 + (1 | school)' --scale '~ 1 + (1 | school)' --out fits/m1",
           "realdata", run=MAKES["fits/m1"], why="shorter chains",
           check=_files("fits/m1/groups.csv", "fits/m1/posterior.nc", "fits/m1/fit.json")),
    Recipe("simstudy fit data.csv --location 'y ~ x + (1 | school)' --scale '~ x + (1 | school)' --out fits/m2 --plots",
           "realdata", run=MAKES["fits/m2"], why="shorter chains",
           check=_files("fits/m2/groups.csv", "fits/m2/posterior.nc", "fits/m2/fit.json")),
    Recipe("simstudy compare fits/m1 fits/m2", "realdata", needs=("fits/m1", "fits/m2"), check=_says("elpd")),
    Recipe("simstudy hlm data.csv --location 'y ~ 1 + (1 | school)' --scale '~ 1 + (1 | school)' "
           "--fit fits/m1 --out hlm_m1/", "realdata", needs=("fits/m1",), check=_files("hlm_m1/pip_vs_z.png")),
    Recipe("simstudy sensitivity data.csv --location 'y ~ 1 + (1 | school)' --scale '~ 1 + (1 | school)' "
           "--pi '0.1,0.25,0.5,0.75,beta(1,1)' --scale-sd 'half_t(3, 1),half_normal(0.25),half_cauchy(1)' --out sens/",
           "realdata",
           run="simstudy sensitivity data.csv --location 'y ~ 1 + (1 | school)' --scale '~ 1 + (1 | school)' "
               "--pi '0.1,0.25,0.5,0.75,beta(1,1)' --scale-sd 'half_t(3, 1),half_normal(0.25),half_cauchy(1)' "
               "--out sens/ --chains 2 --warmup 100 --draws 100",
           why="shorter chains", check=_files("sens/pips.csv", "sens/settings.csv")),
    Recipe("simstudy datasets saeb", "realdata", check=_says("saeb.csv")),
    Recipe("simstudy fit saeb --within-between student_ses:school_ses "
           "--location \"math_proficiency ~ student_ses * school_ses + (1 | school_id)\" "
           "--scale \"~ student_ses * school_ses + (1 | school_id)\" --out fits/saeb_m2", "realdata",
           run="simstudy fit saeb --within-between student_ses:school_ses "
               "--location 'math_proficiency ~ student_ses * school_ses + (1 | school_id)' "
               "--scale '~ student_ses * school_ses + (1 | school_id)' --out fits/saeb_m2 "
               "--chains 1 --warmup 40 --draws 40",
           why="Saeb Model 2 with very short chains", check=_files("fits/saeb_m2/groups.csv", "fits/saeb_m2/fit.json")),
    Recipe(".venv/bin/python analysis/saeb_models.py", "realdata",
           run=".venv/bin/python analysis/saeb_models.py --chains 1 --warmup 40 --draws 40 --no-plots --out saeb_all",
           why="all three models, very short chains", check=_files("saeb_all/comparison.csv", "saeb_all/M3")),
    Recipe(".venv/bin/python analysis/saeb_models.py --models M1 --chains 2 --warmup 500 --draws 500", "realdata",
           run=".venv/bin/python analysis/saeb_models.py --models M1 --chains 2 --warmup 100 --draws 100 --out saeb_m1",
           why="shorter chains", check=_files("saeb_m1/M1/groups.csv")),
    # ---------------------------------------------------------------- clusters
    Recipe(".venv/bin/simstudy plan designs/paper_study1.toml --cluster slurm --workers 64 --no-calibrate --job-script",
           "cluster", check=_job_script),
    Recipe(".venv/bin/simstudy status results/paper_study1.zarr", "cluster", needs=("results/paper_study1.zarr",),
           check=_says("complete")),
    Recipe("SIMSTUDY_MODE=local sbatch -c 64 --mem=200G --time=1-00:00:00 cluster/run_study.sbatch "
           "designs/paper_study1.toml", "cluster",
           run="SIMSTUDY_MODE=local SLURM_CPUS_PER_TASK=2 bash cluster/run_study.sbatch designs/paper_study1.toml",
           why="the batch script run by bash as SLURM would run it, on 2 CPUs", check=_says("complete")),
    Recipe("qsub -l select=1:ncpus=64:mem=200gb -v SIMSTUDY_MODE=local,DESIGN=designs/paper_study1.toml "
           "cluster/run_study.pbs", "cluster",
           run="SIMSTUDY_MODE=local DESIGN=designs/paper_study1.toml NCPUS=2 STORE=results/pbs_local.zarr "
               "bash cluster/run_study.pbs",
           why="the batch script run by bash as PBS would run it, on 2 CPUs (its own store)", check=_says("complete")),
    Recipe(".venv/bin/simstudy run designs/paper_study1.toml --store /shared/results/paper_study1.zarr "
           "--cluster tcp://HOST:8786", "cluster",
           run=TCP_RUN, why="a scheduler and one worker started here as the document starts them, on a free port; "
                            "the store in the workspace", check=_says("complete", files=("results/tcp.zarr",))),
    # SLURM: run on the single-node SLURM that tests/acceptance/test_docs_slurm.py starts, one worker job
    Recipe("simstudy run designs/paper_study1.toml --store /project/study1.zarr --cluster slurm --workers 40", "slurm",
           run="simstudy run designs/paper_study1.toml --store results/slurm_run.zarr --cluster slurm --workers 1",
           why="one worker job on the test node; the store in the workspace", env=SLURM_ENV,
           check=_says("complete", "cluster/jobqueue.yaml", files=("results/slurm_run.zarr",))),
    Recipe(".venv/bin/simstudy run designs/paper_study1.toml --store results/paper_study1.zarr --cluster slurm "
           "--workers 64", "slurm",
           run=".venv/bin/simstudy run designs/paper_study1.toml --store results/slurm_run2.zarr --cluster slurm "
               "--workers 1", why="one worker job on the test node (its own store)", env=SLURM_ENV,
           check=_says("complete", files=("results/slurm_run2.zarr",))),
    Recipe("sbatch cluster/run_study.sbatch designs/paper_study1.toml results/paper_study1.zarr 64", "slurm",
           run="sbatch --wait --time=10 cluster/run_study.sbatch designs/paper_study1.toml results/sbatch.zarr 1 "
               "&& cat simstudy-*.log",
           why="--wait for the client job (10 minutes at most); one worker job on the test node; the job's log shown",
           env=SLURM_ENV, check=_says("complete", files=("results/sbatch.zarr",))),
    # PBS: no PBS server here; the batch script's local mode runs above, the worker job script is rendered
    Recipe("qsub -v DESIGN=designs/paper_study1.toml,STORE=results/paper_study1.zarr,JOBS=64 cluster/run_study.pbs",
           "cluster",
           run="simstudy plan designs/paper_study1.toml --cluster pbs --workers 64 --no-calibrate --job-script",
           why="no PBS server here: the job script the client would submit (from cluster/jobqueue.yaml) is rendered "
               "instead", check=_says("#PBS", "walltime=04:00:00", "--lifetime 210m")),
    Recipe("sudo bash cluster/start_local_slurm.sh", "cluster", covered_by="tests/acceptance/test_docs_slurm.py",
           why="starts system daemons as root: tests/acceptance/test_docs_slurm.py runs it (in CI it must)"),
    Recipe("sudo bash cluster/start_local_slurm.sh --stop", "cluster", covered_by="tests/acceptance/test_docs_slurm.py",
           why="stops the daemons tests/acceptance/test_docs_slurm.py started"),
]


def recipe_for(doc_tokens: tuple[str, ...]) -> list[Recipe]:
    return [r for r in RECIPES if r.matches(doc_tokens)]


def ensure(ws, needed: tuple[str, ...]) -> None:
    """Make the workspace paths a command needs, each by its command in MAKES (once)."""
    for path in needed:
        if not (ws.path / path).exists():
            ws.sh(MAKES[path])
            assert (ws.path / path).exists(), f"`{MAKES[path]}` did not make {path}"


def run_recipe(ws, recipe: Recipe, root: Path) -> None:
    ensure(ws, recipe.needs)
    proc = ws.sh(recipe.command.replace("{root}", str(root)), env=recipe.env, check_rc=recipe.rc)
    if recipe.check is not None:
        recipe.check(ws, proc)


def documented_command_tests(group: str):
    """The module-scoped workspace fixture and the parametrised test that runs every recipe of
    ``group`` in it: ``ws, test_documented_command = documented_command_tests("grid")``."""
    import pytest

    from user_workspace import Workspace

    @pytest.fixture(scope="module")
    def ws(tmp_path_factory):
        return Workspace(tmp_path_factory.mktemp("user") / "work")

    @pytest.mark.parametrize("recipe", [r for r in RECIPES if r.group == group and not r.covered_by],
                             ids=lambda r: r.doc[:70])
    def test_documented_command(ws, recipe, root):
        run_recipe(ws, recipe, root)

    return ws, test_documented_command
