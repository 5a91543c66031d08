"""analysis/findings.py: the subsets are the shipped cells; the smoke configuration end to end
(run, FINDINGS.md with five sections, figures, numbers equal to simstudy.evaluate's, and
--report-only reproducing the text except timing lines)."""

import importlib.util
import re

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import simstudy.evaluate as E
from simstudy.findings.document import mask_timing, plan_lines
from simstudy.findings.subsets import STUDIES, Subset, SubsetError, designs_for, subset_design
from simstudy.findings.tables import TIMING, core_seconds, grouped, pm
from simstudy.evaluate.decision import decision_table
from simstudy.findings.sections import robustness_answer
from simstudy.study.design import load_design

SECTIONS = ["## 1. Hyperparameters", "## 2. Against the classical method", "## 3. Small and ragged groups",
            "## 4. Longitudinal data", "## 5. Cost"]


def _script(root):
    spec = importlib.util.spec_from_file_location("findings_script", root / "analysis" / "findings.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ----------------------------------------------------------------------------- subsets (no MCMC)
def test_default_subsets_are_the_shipped_cells(root):
    """Every default subset cell is the shipped cell: same id, settings and replicate seeds, and
    the shipped design extends the subset (a full run on the same store adds only new work)."""
    subsets = designs_for("default", root / "designs")
    assert set(subsets) == set(STUDIES)
    for study, sub in subsets.items():
        full = load_design(root / "designs" / f"{study}.toml", max_cells=None, max_tasks=None)
        cells = {c.cell_id: c for c in full.cells()}
        assert sub.n_cells >= 1 and sub.replicates % sub.block_size == 0
        assert sub.block_size == full.block_size and sub.seed == full.seed
        for c in sub.cells():
            fc = cells[c.cell_id]
            assert c.settings == fc.settings
            for r in (0, sub.replicates - 1):
                assert c.seed(sub.seed, r).generate_state(4).tolist() == fc.seed(full.seed, r).generate_state(4).tolist()
    # the subsets keep levels as documented: paper_study1 all 117 cells at 20 of 100 replicates,
    # the robustness study whole (it is section 1's answer), longitudinal J = 50 only
    assert subsets["paper_study1"].n_cells == 117 and subsets["paper_study1"].replicates == 20
    assert subsets["robustness"].n_cells == 300 and subsets["sensitivity"].n_cells == 80
    assert sum(d.n_fits for d in subsets.values()) < sum(
        load_design(root / "designs" / f"{s}.toml", max_cells=None, max_tasks=None).n_fits for s in STUDIES)


def test_subset_refuses_levels_the_design_lacks(root):
    with pytest.raises(SubsetError, match=r"levels\['pi'\].*0.3"):
        subset_design(root / "designs", Subset("sensitivity", 10, {"pi": (0.3,)}), "default")
    with pytest.raises(SubsetError, match=r"levels\['nope'\]"):
        subset_design(root / "designs", Subset("sensitivity", 10, {"nope": (1,)}), "default")
    with pytest.raises(SubsetError, match="multiple of block_size"):
        subset_design(root / "designs", Subset("sensitivity", 15), "default")


def test_default_run_leaves_a_full_store_alone(root, tmp_path):
    """After --config full, --config default must not try to shrink the store (the runner would
    refuse a design that drops cells): the larger store is skipped, and nothing runs."""
    from simstudy.findings.run import holds_more, run_designs, store_path
    from simstudy.study.store import create_or_open

    full = load_design(root / "designs" / "sensitivity.toml")
    sub = designs_for("default", root / "designs", studies=("sensitivity",))
    path = store_path(tmp_path, "sensitivity")
    assert holds_more(path, sub["sensitivity"]) is None  # no store yet: run
    create_or_open(path, full)
    assert "extends this configuration" in holds_more(path, sub["sensitivity"])
    assert holds_more(path, full) is None  # the same design: resume it
    assert run_designs(sub, tmp_path, "default", progress=False) == {}


def _decision_frame(tpr_b: float) -> pd.DataFrame:
    """Two settings x (null + two shares) at one (J, n): setting a keeps P(>=1 false flag) <= 0.1
    everywhere; b breaks it at the null truth unless ``tpr_b`` ... (its fwer is fixed at 0.3 there)."""
    rows = []
    for pi, fw_null, tpr in ((0.1, 0.05, (0.5, 0.7)), (0.5, 0.30, (tpr_b, tpr_b))):
        for share, fw, t in ((0.0, fw_null, np.nan), (0.05, 0.04, tpr[0]), (0.25, 0.03, tpr[1])):
            rows.append({"n_groups": 50, "group_size": 20, "pi": pi, "share_inconsistent": share, "tpr": t,
                         "tpr_mcse": 0.02, "fwer": fw, "fwer_mcse": 0.03})
    return pd.DataFrame(rows)


def test_robustness_answer_names_the_admissible_prior_and_its_worst_cases():
    """The answer never relies on the true share: it names the setting that keeps the level at
    every truth (the null included) even when another has a higher TPR, with its worst cases."""
    text = robustness_answer(decision_table(_decision_frame(0.9)), "shares 0, 0.05, 0.25")
    assert text.startswith("Not knowing the truth (shares 0, 0.05, 0.25)")
    assert "**pi=0.1**" in text and "worst-case TPR from 0.50 to 0.50" in text
    assert "at most 0.05 ± 0.03" in text and "0.5" not in text.split("**pi=0.1**")[1].split("TPR")[0]
    # no setting keeps the level: said, with the lowest worst case
    none = _decision_frame(0.9).assign(fwer=0.4)
    text = robustness_answer(decision_table(none), "x")
    assert "no setting keeps the level at J = 50, n = 20 (lowest worst case 0.40 ± 0.03" in text


def test_plan_ratio_only_where_the_measured_time_covers_every_fit():
    """A run killed before it recorded itself leaves fits without wall time: no ratio then."""
    cost = pd.DataFrame({"study": ["a", "b"], "fits": [100, 190], "core_s": [1.0, 1.0], "full_fits": [100, 190],
                         "measured_wall_s": [600.0, 769.0], "recorded_fits": [100, 90],
                         "planned_wall_s": [300.0, 400.0], "workers": [2, 2]})
    a, b = plan_lines(cost)[2:]
    assert "| 2.00 |" in a and "fits)" not in a
    assert "(90 of 190 fits) | – |" in b


def test_core_seconds_counts_each_block_compile_once():
    done = np.array([[True, True, True, False]])
    ds = xr.Dataset({"done": (("cell", "replicate"), done),
                     "sample_s": (("cell", "replicate"), [[1.0, 2.0, 3.0, 9.0]]),
                     "compile_s": (("cell", "replicate"), [[10.0, 10.0, 5.0, 7.0]])})
    fits, secs = core_seconds(ds, block_size=2)
    assert fits.tolist() == [3] and secs.tolist() == [1 + 2 + 3 + 10 + 5]


# ----------------------------------------------------------------------------- smoke, end to end
def _md_table(text: str, heading: str) -> pd.DataFrame:
    """The Markdown table following the line that starts with ``heading``."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(heading))
    j = next(k for k in range(i + 1, len(lines)) if lines[k].startswith("|"))
    rows = []
    while j < len(lines) and lines[j].startswith("|"):
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", lines[j].strip())[1:-1]])
        j += 1
    return pd.DataFrame(rows[2:], columns=rows[0])


@pytest.fixture(scope="module")
def smoke(root, tmp_path_factory):
    from distributed import Client, LocalCluster

    tmp = tmp_path_factory.mktemp("findings")
    args = ["--config", "smoke", "--results", str(tmp / "results"), "--out", str(tmp / "FINDINGS.md"), "--quiet"]
    script = _script(root)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc, \
            Client(lc) as client:
        code = script.main(args, client=client)
    return script, args, tmp, code


def test_smoke_run_writes_five_sections_and_its_figures(smoke):
    _, _, tmp, code = smoke
    assert code == 0
    text = (tmp / "FINDINGS.md").read_text()
    positions = [text.index(s) for s in SECTIONS]
    assert positions == sorted(positions)
    for s in SECTIONS:  # each section opens with its generated answer
        assert text[text.index(s):].split("\n", 3)[2].startswith("**Answer.** ")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) >= 8
    for link in links:
        assert (tmp / link).is_file(), link
    for study in STUDIES:
        assert (tmp / "results" / f"{study}.zarr").is_dir()
    # section 1 opens with the robustness study's decision, not a prior tuned to a known share
    assert text[text.index(SECTIONS[0]):].split("\n", 3)[2].startswith("**Answer.** Not knowing the truth")
    assert "Robustness study: choosing a prior without knowing the truth" in text
    assert "plan estimate" in text or "| study | plan estimate |" in text


def test_smoke_tables_equal_simstudy_evaluate(smoke):
    """Table entries are simstudy.evaluate's numbers: the scale-SD prior row is E.marginal over
    the sensitivity cells, the calibration rows the per-cell summary, the methods row
    summarize_methods' TPR."""
    _, _, tmp, _ = smoke
    text = (tmp / "FINDINGS.md").read_text()
    s = E.summarize(E.open_store(tmp / "results" / "sensitivity.zarr"))
    t = _md_table(text, "**Scale-SD prior")
    for metric, head in (("ece", "ECE"), ("tau_t_coverage", "cover τ_t")):
        mg = E.marginal(s, metric, "scale_sd")
        assert t[head].tolist() == [pm(r.value, r.mcse) for r in mg.itertuples()]
    assert t["fits"].astype(int).sum() == int(s["n_used"].sum())

    c = E.summarize(E.open_store(tmp / "results" / "calibration.zarr"))
    t = _md_table(text, "**Calibration study")
    for i, pi in enumerate(E.factor_levels(c, "pi")):
        k = int(np.flatnonzero(np.array([x == pi for x in c["pi"].values.tolist()]))[0])
        assert t["ECE"][i] == pm(float(c["ece"][k]), float(c["ece_mcse"][k]))
        assert t["Brier"][i] == pm(float(c["brier"][k]), float(c["brier_mcse"][k]))

    ds = E.open_store(tmp / "results" / "paper_study1.zarr").load()
    sm = E.summarize_methods(ds)
    slab = np.array([x > 0 for x in sm["share_inconsistent"].values.tolist()])
    t = _md_table(text, "**paper_study1, cells with inconsistent groups")
    z = sm.isel(method=sm["method"].values.tolist().index("hlm_z"))
    want = pm(float(z["fpr"].values[slab].mean()), float(np.sqrt((z["fpr_mcse"].values[slab] ** 2).sum()) / slab.sum()))
    assert t.loc[t["method"] == r"HLM (\|Z\| > 1.96)", "FPR"].iloc[0].startswith(want + " [")
    # grouped() agrees with the numbers it is built from
    g = grouped(s, ["pi"], ["ece"])
    assert g["ece"].tolist() == [float(s["ece"][k]) for k in range(s.sizes["cell"])]


def test_report_only_reproduces_the_text_except_timing(smoke):
    script, args, tmp, _ = smoke
    first = (tmp / "FINDINGS.md").read_text()
    assert script.main(args + ["--report-only"]) == 0
    second = (tmp / "FINDINGS.md").read_text()
    assert script.main(args + ["--report-only"]) == 0
    third = (tmp / "FINDINGS.md").read_text()
    assert second == third  # same stores: identical, timing lines included
    assert mask_timing(first) == mask_timing(second)
    timing = [line for line in first.splitlines() if TIMING in line]
    assert timing and all("## " not in line for line in timing)
    # masking only drops the timing lines: every section and table survives
    assert all(s in mask_timing(first) for s in SECTIONS)


def test_bad_options_are_refused_before_any_work(root, capsys):
    script = _script(root)
    for argv, key in ((["--workers", "0"], "--workers"), (["--cluster", "slrum"], "--cluster"),
                      (["--config", "huge"], "--config")):
        with pytest.raises(SystemExit):
            script.parse_args(argv)
        assert key in capsys.readouterr().err


def test_report_without_stores_says_what_is_missing(root, tmp_path):
    script = _script(root)
    assert script.main(["--report-only", "--results", str(tmp_path / "none"), "--out", str(tmp_path / "F.md"),
                        "--quiet"]) == 0
    text = (tmp_path / "F.md").read_text()
    assert all(s in text for s in SECTIONS)
    assert text.count("has no results store yet") == 7 and "No study has results yet" in text
