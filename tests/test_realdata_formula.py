"""Formula -> MelsmData (simstudy.realdata.formula) and the packaged Saeb data (simstudy.datasets)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simstudy.datasets import add_saeb_predictors, load_saeb
from simstudy.realdata.formula import (
    FormulaError,
    melsm_data_from_formulas,
    parse_formula,
    split_formula,
    split_random,
)

# Saeb school 80 has one student: MelsmData warns about singletons, which is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:.*single observation:UserWarning")

M1 = ("math_proficiency ~ 1 + (1 | school_id)", "~ 1 + (1 | school_id)")
M2 = (
    "math_proficiency ~ student_ses * school_ses + (1 | school_id)",
    "~ student_ses * school_ses + (1 | school_id)",
)
M3 = (
    "math_proficiency ~ student_ses * school_ses + (1 | school_id)",
    "~ student_ses * school_ses + (1 + student_ses | school_id)",
)


@pytest.fixture(scope="module")
def saeb():
    return add_saeb_predictors(load_saeb())


@pytest.fixture
def small():
    rng = np.random.default_rng(1)
    n = 12
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "a": rng.normal(loc=3.0, size=n),  # deliberately not centred
            "b": rng.normal(size=n),
            "g": ["k", "c", "x"] * 4,  # labels out of sorted order
            "h": [1, 2] * 6,
            "s": ["u", "v", "w"] * 4,
            "cat": pd.Categorical(["p", "q"] * 6),
            "flag": [True, False, False] * 4,
        }
    )


# ------------------------------------------------------------------ design matrices
def test_small_matrices_match_hand_built(small):
    d = melsm_data_from_formulas(small, "y ~ a * b + (1 + a | g)", "~ b + (1 + a | g)")
    one = np.ones(len(small))
    a, b = small["a"].to_numpy(), small["b"].to_numpy()
    np.testing.assert_array_equal(d.y, small["y"].to_numpy())
    np.testing.assert_array_equal(d.X, np.column_stack([one, a, b, a * b]))
    np.testing.assert_array_equal(d.Z_loc, np.column_stack([one, a]))
    np.testing.assert_array_equal(d.W, np.column_stack([one, b]))
    np.testing.assert_array_equal(d.Z_scale, np.column_stack([one, a]))
    assert d.x_names == ("Intercept", "a", "b", "a:b")
    assert d.z_loc_names == ("Intercept", "a")
    assert d.w_names == ("Intercept", "b")
    assert d.z_scale_names == ("Intercept", "a")
    assert list(d.group_labels) == ["c", "k", "x"]
    np.testing.assert_array_equal(d.group_labels[d.group], small["g"].to_numpy())
    assert d.response == "y" and d.group_name == "g"
    # centring is left to the user: the raw column enters as it is
    assert abs(d.X[:, 1].mean()) > 1
    assert d.meta["location_formula"] == "y ~ a * b + (1 + a | g)"
    assert d.meta["scale_formula"] == "~ b + (1 + a | g)"
    assert d.meta["dropped_rows"] == 0


def test_random_slope_without_intercept_and_scale_without_tilde(small):
    d = melsm_data_from_formulas(small, "y ~ a + (0 + a | g)", "1 + (1 | g)")
    np.testing.assert_array_equal(d.Z_loc, small[["a"]].to_numpy())
    assert d.z_loc_names == ("a",)
    assert d.dims == dict(P=2, Q_loc=1, S=1, K=1)


def test_bool_and_explicit_categorical_coding(small):
    d = melsm_data_from_formulas(small, "y ~ flag + C(s) + (1 | g)", "~ 1 + (1 | g)")
    assert d.x_names == ("Intercept", "flag", "C(s)[v]", "C(s)[w]")
    np.testing.assert_array_equal(d.X[:, 1], small["flag"].to_numpy().astype(float))
    np.testing.assert_array_equal(d.X[:, 2], (small["s"] == "v").to_numpy().astype(float))


def test_saeb_model2_matrices_match_hand_built(saeb):
    d = melsm_data_from_formulas(saeb, *M2)
    one = np.ones(len(saeb))
    w, b = saeb["student_ses"].to_numpy(), saeb["school_ses"].to_numpy()
    expected = np.column_stack([one, w, b, w * b])
    np.testing.assert_array_equal(d.X, expected)
    np.testing.assert_array_equal(d.W, expected)
    np.testing.assert_array_equal(d.Z_loc, one[:, None])
    np.testing.assert_array_equal(d.y, saeb["math_proficiency"].to_numpy())
    assert d.x_names == ("Intercept", "student_ses", "school_ses", "student_ses:school_ses")
    np.testing.assert_array_equal(d.group_labels, np.arange(1, 161))
    np.testing.assert_array_equal(d.group, saeb["school_id"].to_numpy() - 1)


def test_saeb_model3_random_slope(saeb):
    d = melsm_data_from_formulas(saeb, *M3)
    np.testing.assert_array_equal(d.Z_scale, np.column_stack([np.ones(len(saeb)), saeb["student_ses"].to_numpy()]))
    assert d.z_scale_names == ("Intercept", "student_ses")


@pytest.mark.parametrize(
    "model, dims, group_level",
    [
        (M1, dict(P=1, Q_loc=1, S=1, K=1), True),
        (M2, dict(P=4, Q_loc=1, S=4, K=1), False),
        (M3, dict(P=4, Q_loc=1, S=4, K=2), False),
    ],
    ids=["M1", "M2", "M3"],
)
def test_saeb_model_shapes(saeb, model, dims, group_level):
    d = melsm_data_from_formulas(saeb, *model)
    assert d.dims == dims
    assert d.n_obs == 11386 and d.n_groups == 160
    assert d.scale_is_group_level is group_level


# ------------------------------------------------------------------ datasets
def test_load_saeb_facts():
    df = load_saeb()
    assert list(df.columns) == ["school_id", "public", "student_ses", "math_proficiency", "location"]
    assert len(df) == 11386
    sizes = df.groupby("school_id").size()
    assert len(sizes) == 160
    assert sizes[80] == 1 and sizes[61] == 493
    assert not df.isna().any().any()


def test_add_saeb_predictors():
    raw = load_saeb()
    df = add_saeb_predictors(raw)
    assert "school_ses" not in raw.columns  # input untouched
    np.testing.assert_array_equal(df["student_ses_raw"], raw["student_ses"])
    within = df.groupby("school_id")["student_ses"].mean()
    assert np.max(np.abs(within)) < 1e-12
    school = df.groupby("school_id")["school_ses"].first()
    assert (df.groupby("school_id")["school_ses"].nunique() == 1).all()
    assert abs(school.mean()) < 1e-12
    # school_ses + centred student_ses gives back the raw SES up to the grand mean
    grand = raw.groupby("school_id")["student_ses"].mean().mean()
    np.testing.assert_allclose(df["school_ses"] + df["student_ses"] + grand, raw["student_ses"], atol=1e-12)


def test_add_saeb_predictors_student_weighted_grand_mean():
    df = add_saeb_predictors(load_saeb(), grand_mean="students")
    assert abs(df["school_ses"].mean()) < 1e-12
    with pytest.raises(ValueError, match="grand_mean"):
        add_saeb_predictors(load_saeb(), grand_mean="median")


# ------------------------------------------------------------------ text helpers
def test_split_helpers():
    assert split_formula("y ~ a + (1|g)") == ("y", "a + (1|g)")
    assert split_formula("~ a") == (None, "a")
    assert split_formula("a") == (None, "a")
    assert split_random("a * b + (1 + a | g) + I(x + y)") == ("a * b + I(x + y)", ["1 + a | g"])
    assert split_random("(1 | g)") == ("1", ["1 | g"])
    assert split_random("a + (b + c)") == ("a + (b + c)", [])
    p = parse_formula("y ~ a + (1 + b | g)", "location")
    assert p.columns == {"y", "a", "b", "g"} and p.grouping_factors == ["g"]


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "location, scale, needles",
    [
        ("y ~ aa + (1 | g)", "~ 1 + (1 | g)", ["'aa'", "Did you mean 'a'", "Available columns"]),
        ("y ~ a + (1 | g)", "~ bb + (1 | g)", ["'bb'", "scale formula"]),
        ("y ~ a + (1 | gg)", "~ 1 + (1 | g)", ["'gg'"]),
        ("y ~ a + (1 | g)", "y ~ a + (1 | g)", ["scale formula", "'y'", "without"]),
        ("~ a + (1 | g)", "~ 1 + (1 | g)", ["location formula", "no response"]),
        ("a + (1 | g)", "~ 1 + (1 | g)", ["location formula", "no response"]),
        ("y ~ a", "~ 1 + (1 | g)", ["location formula", "no random-effect term"]),
        ("y ~ a + (1 | g)", "~ a", ["scale formula", "no random-effect term", "scale random effect"]),
        ("y ~ a + (1 | g)", "~ 1 + (1 | h)", ["'g'", "'h'", "same grouping factor"]),
        ("y ~ a + (1 | g) + (0 + a | g)", "~ 1 + (1 | g)", ["2 random-effect terms", "(1 + x | group)"]),
        ("y ~ a + (1 | g:h)", "~ 1 + (1 | g:h)", ["g:h", "single column"]),
        ("y ~ a | g", "~ 1 + (1 | g)", ["without parentheses"]),
        ("y ~ a + (1 | g", "~ 1 + (1 | g)", ["unbalanced"]),
        ("y ~ a + (1 | g)", "~ 0 + (1 | g)", ["no fixed effects"]),
        ("y ~ s + (1 | g)", "~ 1 + (1 | g)", ["'s'", "numeric coding", "0/1 dummy"]),
        ("y ~ a + (1 + s | g)", "~ 1 + (1 | g)", ["'s'", "numeric coding"]),
        ("y ~ a + (1 | g)", "~ a:cat + (1 | g)", ["'cat'", "numeric coding"]),
        ("s ~ a + (1 | g)", "~ 1 + (1 | g)", ["response column 's'"]),
        ("y ~ nofunc(a) + (1 | g)", "~ 1 + (1 | g)", ["location formula", "nofunc"]),
    ],
)
def test_errors_name_the_offender(small, location, scale, needles):
    with pytest.raises(FormulaError) as err:
        melsm_data_from_formulas(small, location, scale)
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))


def test_missing_values_error_and_dropna(small):
    df = small.copy()
    df.loc[[2, 7], "a"] = np.nan
    df.loc[7, "b"] = np.nan
    df.loc[9, "s"] = None  # unused column: ignored
    with pytest.raises(FormulaError) as err:
        melsm_data_from_formulas(df, "y ~ a + (1 | g)", "~ b + (1 | g)")
    msg = str(err.value)
    assert "'a' (2 rows)" in msg and "'b' (1 row)" in msg and "[2, 7]" in msg and "dropna=True" in msg
    d = melsm_data_from_formulas(df, "y ~ a + (1 | g)", "~ b + (1 | g)", dropna=True)
    assert d.meta["dropped_rows"] == 2 and d.n_obs == len(df) - 2
    keep = df.drop(index=[2, 7])
    np.testing.assert_array_equal(d.X[:, 1], keep["a"].to_numpy())
    np.testing.assert_array_equal(d.group_labels[d.group], keep["g"].to_numpy())


def test_missing_group_label(small):
    df = small.copy()
    df["g"] = df["g"].astype(object)
    df.loc[4, "g"] = None
    with pytest.raises(FormulaError, match="'g' \\(1 row\\)"):
        melsm_data_from_formulas(df, "y ~ a + (1 | g)", "~ 1 + (1 | g)")
    d = melsm_data_from_formulas(df, "y ~ a + (1 | g)", "~ 1 + (1 | g)", dropna=True)
    assert d.meta["dropped_rows"] == 1


def test_formula_error_is_value_error():
    assert issubclass(FormulaError, ValueError)
