"""Metrics per method on a small hand-made store: every number equals a hand count."""

from __future__ import annotations

import numpy as np
import pytest

from simstudy.evaluate.methods import (
    compare_methods_sentences,
    overall_by_method,
    paired_difference,
    summarize_methods,
)
from simstudy.study.design import parse_design
from simstudy.study.scoring import SCHEMA, failed_record, stack_records
from simstudy.study.store import create_or_open, open_results, write_block

TEXT = """
seed = 1
replicates = 3
block_size = 3
methods = ["ss_melsm", "hlm_z"]

[generator]
n_groups = 4
group_size = 10

[factors]
share_inconsistent = [0.25, 0.5]
"""

# truth per replicate (4 groups) and, per method, the flags; ss_melsm flags come from pip >= 0.75
DELTA = [[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]]
PIP = [[0.9, 0.8, 0.1, 0.2], [0.2, 0.1, 0.1, 0.1], [0.95, 0.3, 0.2, 0.1]]  # TP,FP | FN | TP
HLM = [[1, 1, 1, 0], [1, np.nan, 0, 0], [0, 0, 0, 0]]  # TP,2FP | TP (group 1 unscored) | FN
ZABS = [[2.5, 2.1, 2.0, 0.3], [3.0, np.nan, 0.5, 0.1], [1.0, 0.2, 0.3, 0.4]]


def _records():
    recs = []
    for r in range(3):
        rec = failed_record(4, "", n_methods=2)
        rec["status"] = np.asarray("ok", dtype=SCHEMA["status"]["dtype"])
        rec["error"] = np.asarray("", dtype=SCHEMA["error"]["dtype"])
        rec["delta_true"] = np.asarray(DELTA[r], float)
        rec["t_true"] = np.where(rec["delta_true"] > 0, 0.5, 0.0)
        rec["pip"] = np.asarray(PIP[r], float)
        rec["flag"] = np.stack([(rec["pip"] >= 0.75).astype(float), np.asarray(HLM[r], float)])
        rec["score"] = np.stack([rec["pip"], np.asarray(ZABS[r], float)])
        rec["method_s"] = np.array([2.0, 0.01])
        recs.append(rec)
    return stack_records(recs)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    design = parse_design(TEXT)
    info = create_or_open(tmp_path_factory.mktemp("m") / "m.zarr", design)
    write_block(info.path, 0, [0, 1, 2], _records())  # cell 1 stays pending
    return open_results(info.path).load()


def test_metrics_per_method_equal_a_hand_count(store):
    s = summarize_methods(store)
    assert list(s["method"].values) == ["ss_melsm", "hlm_z"] and s["tpr"].dims == ("method", "cell")
    ss, hz = s.isel(cell=0).sel({"method": "ss_melsm"}), s.isel(cell=0).sel({"method": "hlm_z"})
    # SS-MELSM: replicate TPR 1, 0, 1; FPR 1/3, 0, 0; precision 1/2, undefined, 1; FWER 1, 0, 0
    assert float(ss.tpr) == pytest.approx(2 / 3) and float(ss.fpr) == pytest.approx(1 / 9)
    assert float(ss.precision) == pytest.approx(0.75) and int(ss.n_undefined_precision) == 1
    assert float(ss.fwer) == pytest.approx(1 / 3)
    assert (int(ss.tp), int(ss.fp), int(ss.fn), int(ss.tn)) == (2, 1, 1, 8)
    # HLM |Z|: TPR 1, 1, 0; FPR 2/3, 0 (the unscored group counts as not flagged), 0; precision 1/3, 1, -
    assert float(hz.tpr) == pytest.approx(2 / 3) and float(hz.fpr) == pytest.approx(2 / 9)
    assert float(hz.precision) == pytest.approx(2 / 3) and float(hz.fwer) == pytest.approx(1 / 3)
    assert (int(hz.tp), int(hz.fp), int(hz.fn), int(hz.tn)) == (2, 2, 1, 7)
    assert float(hz.tpr_mcse) == pytest.approx(np.std([1, 1, 0], ddof=1) / np.sqrt(3))
    # ROC AUC from the scores: ss 1, 1 (0.2 vs 0.1, 0.1, 0.1), 1; hlm_z 1, 1, 1 - 2/3 (1.0 beats 0.2, 0.3, 0.4)
    assert float(ss.roc_auc) == pytest.approx(1.0) and float(hz.roc_auc) == pytest.approx(1.0)
    assert float(hz.method_s) == pytest.approx(0.01) and float(ss.method_s) == pytest.approx(2.0)
    # the pending cell has no numbers
    assert np.isnan(s["tpr"].isel(cell=1).values).all()


def test_ss_melsm_threshold_is_honoured(store):
    s = summarize_methods(store, threshold=0.5)
    ss = s.isel(cell=0).sel({"method": "ss_melsm"})
    assert float(ss.fpr) == pytest.approx(1 / 9)  # 0.8 is flagged either way; 0.3 < 0.5
    s2 = summarize_methods(store, threshold=0.25)  # now 0.3 flags too
    assert float(s2.isel(cell=0).sel({"method": "ss_melsm"}).fpr) == pytest.approx((1 / 3 + 0 + 1 / 3) / 3)


def test_paired_difference_and_sentences(store):
    d = paired_difference(store, "fpr", "ss_melsm", "hlm_z")
    diffs = np.array([1 / 3 - 2 / 3, 0.0, 0.0])
    assert d["diff"][0] == pytest.approx(diffs.mean()) and d["n"][0] == 3
    assert d["mcse"][0] == pytest.approx(np.std(diffs, ddof=1) / np.sqrt(3))
    # |diff| = 0.111 < 2 MCSE (0.222): no sentence
    assert compare_methods_sentences(store) == []
    table = overall_by_method(summarize_methods(store), metrics=("tpr", "fpr"))
    assert set(table["method"]) == {"ss_melsm", "hlm_z"}
    assert table.set_index("method").loc["hlm_z", "fpr"] == pytest.approx(2 / 9)


def test_sentence_only_beyond_two_paired_mcse(store):
    ds = store.copy(deep=True)
    flag = ds["flag"].values  # (cell, replicate, method, group); method 1 = hlm_z
    flag[0, :, 1, 1:] = 1.0  # hlm_z flags every consistent group: FPR 1 in every replicate
    sentences = compare_methods_sentences(ds, metrics=("fpr",))
    assert len(sentences) == 1
    s = sentences[0]
    assert s.startswith("The SS-MELSM's FPR (0.111") and "HLM (|Z| > 1.96)'s (1.000" in s and "-0.889" in s


def test_methods_figure_and_report_section(store, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from simstudy.evaluate.plots import plot_methods
    from simstudy.evaluate.report import build_report

    fig = plot_methods(summarize_methods(store))
    assert len(fig.axes) == 4 and all(len(ax.lines) >= 2 for ax in fig.axes)  # one line per method
    path = build_report(store, tmp_path / "rep", figures=False)
    text = path.read_text()
    assert "## Methods compared" in text and "| SS-MELSM | 0.667 (0.333) | 0.111 (0.111)" in text and "> 1.96) |" in text
    assert (tmp_path / "rep" / "tables" / "methods.csv").is_file()
