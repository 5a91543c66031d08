"""Build a :class:`~simstudy.model.data.MelsmData` from a DataFrame and two lme4-style formulas.

The SS-MELSM has a location submodel (the mean) and a scale submodel (the log residual SD),
each with fixed effects and random effects for one grouping factor::

    location = "math_proficiency ~ student_ses * school_ses + (1 | school_id)"
    scale    = "~ student_ses * school_ses + (1 + student_ses | school_id)"
    data = melsm_data_from_formulas(df, location, scale)

Formulas are parsed and evaluated with the ``formulae`` library. Rules:

* the location formula has a response; the scale formula has none (it models the residual
  SD of the same response);
* each formula has exactly one random-effect term ``(expr | g)``; the scale formula needs
  one because the spike-and-slab selects among scale random effects; ``g`` is a plain column,
  the same in both formulas; ``(1 + x | g)`` gives two random-effect columns (1 and x);
* predictors are numeric columns (bool counts as 0/1); string or categorical columns need a
  numeric coding (a 0/1 dummy) or an explicit ``C(column)``;
* transformations are evaluated as written (``center(x)``, ``log(x)``, ``I(a * b)``); no
  centring happens behind the user's back;
* a formula may call only :data:`ALLOWED_FUNCTIONS` (formulae's transforms such as ``C``, ``I``,
  ``center``, ``scale``, ``poly``, ``bs`` and element-wise math such as ``log``, ``exp``,
  ``sqrt``; ``np.log`` etc. are accepted as aliases). Anything else (``np.save(...)``,
  ``pd.read_pickle(...)``, ``__import__``, attribute access) is refused before any evaluation:
  formulas are data, never Python code.

All checks (syntax, unknown columns, response, grouping factor, column types, missing
values) run before any matrix is built, and fail with a :class:`FormulaError` that names the
offending column or formula and the fix.
"""

from __future__ import annotations

import difflib
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..model.data import MelsmData

__all__ = [
    "FormulaError",
    "ALLOWED_FUNCTIONS",
    "ParsedFormula",
    "split_formula",
    "split_random",
    "parse_formula",
    "melsm_data_from_formulas",
]

_MAX_ROWS_SHOWN = 5


class FormulaError(ValueError):
    """A model formula cannot be used with the data; the message names the problem and the fix."""


class CollinearDesignWarning(UserWarning):
    """A design column is a linear combination of the others: those effects are not identified."""


# ------------------------------------------------------------------------ what a formula may call
#: element-wise math a formula may call by name (``log(x)``; ``np.log(x)`` is accepted too)
MATH_FUNCTIONS = {
    "abs": np.abs, "exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "log2": np.log2,
    "log10": np.log10, "sqrt": np.sqrt, "square": np.square,
}
#: formulae's own transforms a formula may call (``offset`` and the binomial ``p``/``prop``/
#: ``proportion`` responses are left out: the SS-MELSM has no use for them)
FORMULAE_TRANSFORMS = ("C", "I", "S", "T", "B", "binary", "center", "scale", "standardize", "poly", "bs", "cr",
                       "cc")
#: names a formula may use as an argument value (contrast codings: ``C(g, Treatment)``)
VALUE_NAMES = ("Treatment", "Sum")
#: every function a formula may call, sorted (the list shown when a formula calls another one)
ALLOWED_FUNCTIONS = tuple(sorted((*MATH_FUNCTIONS, *FORMULAE_TRANSFORMS), key=str.lower))
_NUMPY_ALIASES = ("np", "numpy")


def allowed_functions_text() -> str:
    return (f"{', '.join(ALLOWED_FUNCTIONS)} (also as np.log, np.exp, ...; contrasts {', '.join(VALUE_NAMES)} "
            "as arguments of C)")


def _allowed_callee(name: str) -> bool:
    if name in ALLOWED_FUNCTIONS:
        return True
    head, dot, tail = name.partition(".")
    return bool(dot) and head in _NUMPY_ALIASES and tail in MATH_FUNCTIONS


def _formula_namespace():
    """The only names a formula's calls see besides its data columns (formulae adds its own
    transforms and contrasts): the math functions, and ``np``/``numpy`` holding just those."""
    from types import MappingProxyType, SimpleNamespace

    from formulae.environment import Environment

    math = SimpleNamespace(**MATH_FUNCTIONS)
    return Environment([MappingProxyType({**MATH_FUNCTIONS, "np": math, "numpy": math})])


def _check_safe(description, which: str, formula: str) -> None:
    """Refuse, before anything is evaluated, a formula that calls anything but
    :data:`ALLOWED_FUNCTIONS`, or reaches for attributes (``pd.read_pickle``, ``x.__class__``)
    or dunder names. Walks the expression tree that ``formulae`` would evaluate (its
    ``LazyCall``/``LazyVariable``/``LazyOperator``/``LazyValue`` objects), so what is checked is
    exactly what would run."""
    from formulae.terms.call import Call
    from formulae.terms.call_resolver import LazyCall, LazyOperator, LazyValue, LazyVariable

    bad: list[str] = []

    def visit(node) -> None:
        if isinstance(node, LazyCall):
            if not _allowed_callee(str(node.callee)):
                bad.append(f"calls {node.callee!r}")
            for arg in [*node.args, *node.kwargs.values()]:
                visit(arg)
            for key in node.kwargs:
                if str(key).startswith("__"):
                    bad.append(f"passes the keyword {key!r}")
        elif isinstance(node, LazyOperator):
            for arg in node.args:
                visit(arg)
        elif isinstance(node, LazyVariable):
            name = str(node.name)
            if "." in name or name.startswith("__"):
                bad.append(f"names {name!r}")
        elif not isinstance(node, LazyValue):  # numbers, strings, True/False/None are plain values
            bad.append(f"uses the expression {node!s}")

    terms = list(description.common_terms)
    for g in description.group_terms:
        terms += [g.expr, g.factor]
    if description.response is not None:
        terms.append(description.response.term)
    for term in terms:
        for component in getattr(term, "components", ()):
            if isinstance(component, Call):
                visit(component.call)
            elif "." in str(getattr(component, "name", "")) or str(getattr(component, "name", "")).startswith("__"):
                bad.append(f"names {component.name!r}")
    if bad:
        raise FormulaError(
            f"{which} formula {formula!r} {bad[0]}, which a formula may not: formulas name data columns and "
            f"call only {allowed_functions_text()}; formulas are never run as Python code"
        )


# ---------------------------------------------------------------------------------- text level
def split_formula(formula: str) -> tuple[str | None, str]:
    """Split ``"lhs ~ rhs"`` into ``(lhs, rhs)``; ``lhs`` is None when there is no response
    (``"~ rhs"`` or just ``"rhs"``)."""
    if not isinstance(formula, str) or not formula.strip():
        raise FormulaError(f"formula must be a non-empty string, got {formula!r}")
    if formula.count("~") > 1:
        raise FormulaError(f"formula {formula!r} has more than one '~'")
    lhs, sep, rhs = formula.partition("~")
    if not sep:
        return None, formula.strip()
    lhs = lhs.strip() or None
    if not rhs.strip():
        raise FormulaError(f"formula {formula!r} has nothing right of '~'; write e.g. '~ 1 + (1 | group)'")
    return lhs, rhs.strip()


def split_random(rhs: str) -> tuple[str, list[str]]:
    """Split a right-hand side into its fixed part and its random-effect terms.

    ``"a * b + (1 + a | g)"`` gives ``("a * b", ["1 + a | g"])``. Random-effect terms are the
    parenthesised groups whose top level contains ``|``. The fixed part is ``"1"`` when
    nothing else is left. A ``|`` outside parentheses, ``||`` and unbalanced parentheses raise
    :class:`FormulaError`.
    """
    fixed, random = [], []
    depth, start, last = 0, None, 0
    for i, ch in enumerate(rhs):
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise FormulaError(f"unbalanced ')' in {rhs!r}")
            if depth == 0:
                inner = rhs[start + 1 : i]
                if _has_top_level_bar(inner):
                    if "||" in inner:
                        raise FormulaError(
                            f"'||' (uncorrelated random effects) is not supported in {rhs!r}; use a single '|'"
                        )
                    fixed.append(rhs[last:start])
                    random.append(inner.strip())
                    last = i + 1
        elif ch == "|" and depth == 0:
            raise FormulaError(
                f"random-effect term without parentheses in {rhs!r}; write it as '(expr | group)', e.g. '(1 | group)'"
            )
    if depth != 0:
        raise FormulaError(f"unbalanced '(' in {rhs!r}")
    fixed.append(rhs[last:])
    return _tidy_sum("".join(fixed)), random


def _has_top_level_bar(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "|" and depth == 0:
            return True
    return False


def _tidy_sum(text: str) -> str:
    """Collapse the ``+`` left behind by removed terms: ``"a +  + b + "`` -> ``"a + b"``."""
    parts = [p.strip() for p in text.split("+")]
    # '+' inside calls or parentheses must survive: only collapse empty pieces.
    kept = [p for p in parts if p]
    return " + ".join(kept) if kept else "1"


# ------------------------------------------------------------------------------ formulae level
@dataclass(frozen=True)
class ParsedFormula:
    """One submodel's formula, parsed but not evaluated."""

    which: str  # "location" or "scale"
    formula: str  # as given
    response: str | None  # response text, e.g. "math_proficiency"
    fixed: str  # fixed-effect part of the right-hand side
    random: tuple[str, ...]  # random-effect terms, e.g. ("1 + x | g",)
    description: object  # formulae.terms.Model

    @property
    def columns(self) -> set[str]:
        """Every data column the formula names (response, predictors, grouping factor)."""
        return {v for v in self.description.var_names if isinstance(v, str) and v}

    @property
    def grouping_factors(self) -> list[str]:
        return sorted({t.factor.name for t in self.description.group_terms})

    @property
    def formulae_text(self) -> str:
        """What is handed to ``formulae`` (which rejects a bare leading ``~``)."""
        rhs = split_formula(self.formula)[1]
        return f"{self.response} ~ {rhs}" if self.response else rhs


def parse_formula(formula: str, which: str = "location") -> ParsedFormula:
    """Parse one submodel's formula; the location formula needs a response, the scale
    formula must not have one. Raises :class:`FormulaError` on syntax errors."""
    if which not in ("location", "scale"):
        raise ValueError(f"which must be 'location' or 'scale', not {which!r}")
    lhs, rhs = split_formula(formula)
    if which == "location" and lhs is None:
        raise FormulaError(
            f"location formula {formula!r} has no response; write 'response ~ predictors + (1 | group)'"
        )
    if which == "scale" and lhs is not None:
        raise FormulaError(
            f"scale formula {formula!r} has a response ({lhs!r}); the scale submodel models the residual SD "
            f"of the location response, so write it without one: '~ {rhs}'"
        )
    fixed, random = split_random(rhs)
    dunder = re.search(r"(?<![A-Za-z0-9_.])__\w*", formula)
    if dunder:  # formulae's scanner would refuse it too, with "Unexpected character: _"
        raise FormulaError(
            f"{which} formula {formula!r} names {dunder.group(0)!r}, which a formula may not: formulas name data "
            f"columns and call only {allowed_functions_text()}; formulas are never run as Python code"
        )
    text = f"{lhs} ~ {rhs}" if lhs else rhs
    try:
        from formulae import model_description

        description = model_description(text)
    except Exception as exc:  # formulae raises ParseError/ScanError/ValueError
        raise FormulaError(f"cannot parse {which} formula {formula!r}: {exc}") from exc
    _check_safe(description, which, formula)  # before anything is evaluated
    return ParsedFormula(which, formula, lhs, fixed, tuple(random), description)


# ---------------------------------------------------------------------------------- checks
def _check_columns(parsed: ParsedFormula, df: pd.DataFrame) -> None:
    available = [str(c) for c in df.columns]
    # contrast names such as C(g, Treatment) are values, not columns (unless the data has one)
    unknown = sorted(parsed.columns - set(available) - set(VALUE_NAMES))
    if not unknown:
        return
    name = unknown[0]
    close = difflib.get_close_matches(name, available, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise FormulaError(
        f"column {name!r} in the {parsed.which} formula {parsed.formula!r} is not in the data.{hint} "
        f"Available columns: {available}"
    )


def _check_random(parsed: ParsedFormula) -> str:
    """Exactly one random-effect term on one plain grouping column; returns that column."""
    from formulae.terms.variable import Variable

    where = f"{parsed.which} formula {parsed.formula!r}"
    if not parsed.random:
        need = (
            "the location submodel needs random effects"
            if parsed.which == "location"
            else "the SS-MELSM needs at least one scale random effect (its spike-and-slab selects among them)"
        )
        raise FormulaError(f"{where} has no random-effect term; {need}: add e.g. '+ (1 | group)'")
    if len(parsed.random) > 1:
        raise FormulaError(
            f"{where} has {len(parsed.random)} random-effect terms {list(parsed.random)}; "
            "use one term with all effects, e.g. '(1 + x | group)'"
        )
    terms = parsed.description.group_terms
    if not terms:
        raise FormulaError(f"{where}: the random-effect term ({parsed.random[0]}) has no effects; write e.g. '(1 | group)'")
    factors = parsed.grouping_factors
    if len(factors) != 1:
        raise FormulaError(f"{where} has grouping factors {factors}; the SS-MELSM takes exactly one")
    components = terms[0].factor.components
    if len(components) != 1 or not isinstance(components[0], Variable):
        raise FormulaError(
            f"{where}: grouping factor {factors[0]!r} must be a single column name; "
            "make a column with one label per group first"
        )
    if not parsed.description.common_terms:
        raise FormulaError(f"{where} has no fixed effects; keep the intercept (drop '0 +' / '- 1')")
    return factors[0]


def _bare_variables(parsed: ParsedFormula) -> list[str]:
    """Predictor columns used as they are (not inside a call such as ``C(x)``)."""
    from formulae.terms.terms import Term
    from formulae.terms.variable import Variable

    exprs = list(parsed.description.common_terms) + [t.expr for t in parsed.description.group_terms]
    names = []
    for term in exprs:
        if isinstance(term, Term):
            names += [c.name for c in term.components if isinstance(c, Variable)]
    return list(dict.fromkeys(names))


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_bool_dtype(series) or (
        pd.api.types.is_numeric_dtype(series) and not isinstance(series.dtype, pd.CategoricalDtype)
    )


def _check_types(parsed: ParsedFormula, df: pd.DataFrame) -> None:
    where = f"{parsed.which} formula {parsed.formula!r}"
    if parsed.response is not None and parsed.response in df.columns and not _is_numeric(df[parsed.response]):
        raise FormulaError(
            f"response column {parsed.response!r} in the {where} is not numeric (dtype {df[parsed.response].dtype}); "
            "the SS-MELSM needs a continuous response"
        )
    for name in _bare_variables(parsed):
        if not _is_numeric(df[name]):
            raise FormulaError(
                f"predictor column {name!r} in the {where} is not numeric (dtype {df[name].dtype}); "
                f"it needs a numeric coding, e.g. a 0/1 dummy column, or write C({name}) for treatment coding"
            )


def _unusable(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """True where a used value is missing (NaN, None) or infinite (inf, -inf in numeric columns)."""
    sub = df[columns]
    bad = sub.isna()
    for c in columns:
        if pd.api.types.is_float_dtype(sub[c]):
            bad[c] = bad[c] | np.isinf(sub[c].to_numpy())
    return bad


def _missing_rows(df: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Rows with a missing or infinite value in a used column (what ``dropna`` drops)."""
    return _unusable(df, columns).any(axis=1)


def _check_missing(df: pd.DataFrame, columns: list[str]) -> None:
    bad = _unusable(df, columns)
    rows = bad.any(axis=1).to_numpy()
    if not rows.any():
        return
    counts = {c: int(n) for c, n in bad.sum().items() if n}
    detail = ", ".join(f"{c!r} ({n} row{'s' if n > 1 else ''})" for c, n in counts.items())
    first = np.flatnonzero(rows)[:_MAX_ROWS_SHOWN].tolist()
    n_inf = int(sum(np.isinf(df[c].to_numpy()).sum() for c in columns if pd.api.types.is_float_dtype(df[c])))
    kind = "missing values" if not n_inf else ("infinite values" if n_inf == int(bad.values.sum()) else
                                                "missing or infinite values")
    raise FormulaError(
        f"{kind} in column(s) {detail}; {int(rows.sum())} of {len(df)} rows affected, "
        f"first at row positions {first} (0-based). Drop those rows with dropna=True (CLI: --dropna; it drops "
        "rows with missing and with infinite values) or fix them first"
    )


# ---------------------------------------------------------------------------------- building
def _design(parsed: ParsedFormula, data: pd.DataFrame):
    from formulae import design_matrices

    try:
        # an explicit environment: the formula sees its data columns and the allowed functions only
        # (never this module's globals, such as pd, as the default captured frame would give it)
        return design_matrices(parsed.formulae_text, data, na_action="error", env=_formula_namespace())
    except Exception as exc:
        raise FormulaError(f"cannot evaluate the {parsed.which} formula {parsed.formula!r}: {exc!r}") from exc


def _fixed_matrix(dm) -> tuple[np.ndarray, list[str]]:
    names = [label for term in dm.common.terms.values() for label in term.labels]
    return np.asarray(dm.common.design_matrix, dtype=np.float64), names


def _check_identified(M: np.ndarray, names: list[str], what: str, parsed: ParsedFormula) -> None:
    """Refuse a design with a constant column beside the intercept (or a second constant
    column): its effect is not identified. Warn (:class:`CollinearDesignWarning`) when a column
    is a linear combination of the columns before it (``x`` and ``2 * x``; a 0/1 column equal to
    one level of a ``C(...)`` coding)."""
    where = f"the {parsed.which} formula {parsed.formula!r}"
    constant = [j for j in range(M.shape[1]) if np.ptp(M[:, j]) == 0]
    if len(constant) > 1:
        j = next((c for c in constant if names[c] != "Intercept"), constant[1])
        value = M[0, j]
        raise FormulaError(
            f"{what} column {names[j]!r} of {where} is constant (every row {value:g}): it duplicates the intercept, "
            f"so its effect is not identified; drop it from the formula (or check the data: after --dropna, or "
            f"in this subset, it does not vary)")
    # incremental rank on unit-norm columns: the first column in the span of the ones before it
    norms = np.linalg.norm(M, axis=0)
    U = M / np.where(norms > 0, norms, 1.0)
    # (one QR without pivoting: |R_jj| is the distance of column j from the span of those before it)
    r = np.abs(np.diagonal(np.linalg.qr(U, mode="r"))) if M.shape[1] > 1 else np.ones(1)
    for j in range(1, M.shape[1]):
        if r[j] <= 1e-10 * max(1.0, float(r.max())):  # a warning: the fit runs, but those effects trade off freely
            warnings.warn(
                f"{what} column {names[j]!r} of {where} is a linear combination of the columns before it "
                f"({', '.join(repr(n) for n in names[:j])}), so their effects are not identified (expect wide "
                "intervals and a high R-hat for them); drop it or one of those it duplicates",
                CollinearDesignWarning, stacklevel=3)
            return


def _random_matrix(dm, n: int) -> tuple[np.ndarray, list[str]]:
    """One column per random effect of the term ``(expr | g)``: the evaluated ``expr``
    (formulae splits ``(1 + x | g)`` into the terms ``1|g`` and ``x|g``, in order)."""
    cols, names = [], []
    for term in dm.group.terms.values():
        cols.append(np.asarray(term.expr.data, dtype=np.float64).reshape(n, -1))
        names += list(term.expr.labels)
    return np.concatenate(cols, axis=1), names


def melsm_data_from_formulas(df: pd.DataFrame, location: str, scale: str, *, dropna: bool = False) -> MelsmData:
    """Build the SS-MELSM dataset from ``df`` and the two submodel formulas.

    ``location``: ``"y ~ fixed + (random | g)"``; ``scale``: ``"~ fixed + (random | g)"``
    (a leading ``~`` is optional). Returns a :class:`MelsmData` with ``X``/``Z_loc`` from the
    location formula, ``W``/``Z_scale`` from the scale formula, column names as ``formulae``
    writes them (``"Intercept"``, ``"a:b"`` for interactions), group labels the sorted unique
    values of ``g``. ``meta`` records both formulas and ``dropped_rows``.

    With ``dropna=True`` rows with a missing (NaN) or infinite (inf, -inf) value in any column
    the formulas use are dropped (and counted in ``meta["dropped_rows"]``); otherwise such
    values raise :class:`FormulaError`. Centring is left to the user: columns enter as they are.
    """
    if not isinstance(df, pd.DataFrame):
        raise FormulaError(f"data must be a pandas DataFrame, got {type(df).__name__}")
    loc = parse_formula(location, "location")
    scl = parse_formula(scale, "scale")
    for parsed in (loc, scl):
        _check_columns(parsed, df)
    g_loc, g_scl = _check_random(loc), _check_random(scl)
    if g_loc != g_scl:
        raise FormulaError(
            f"the location formula groups by {g_loc!r} but the scale formula by {g_scl!r}; "
            "both submodels need the same grouping factor"
        )
    for parsed in (loc, scl):
        _check_types(parsed, df)
    used = [c for c in df.columns if c in loc.columns | scl.columns]
    dropped = 0
    if dropna:
        rows = _missing_rows(df, used)
        dropped = int(rows.sum())
        df = df.loc[~rows]
    else:
        _check_missing(df, used)
    if len(df) == 0:
        raise FormulaError(f"no rows left after dropping {dropped} rows with missing or infinite values")
    data = df.reset_index(drop=True)

    dm_loc, dm_scl = _design(loc, data), _design(scl, data)
    n = len(data)
    y = np.asarray(dm_loc.response.design_matrix, dtype=np.float64).reshape(n)
    X, x_names = _fixed_matrix(dm_loc)
    Z_loc, z_loc_names = _random_matrix(dm_loc, n)
    W, w_names = _fixed_matrix(dm_scl)
    Z_scale, z_scale_names = _random_matrix(dm_scl, n)
    for M, names, what, parsed in ((X, x_names, "fixed-effect", loc), (Z_loc, z_loc_names, "random-effect", loc),
                                   (W, w_names, "fixed-effect", scl), (Z_scale, z_scale_names, "random-effect", scl)):
        _check_identified(M, list(names), what, parsed)
    return MelsmData.from_arrays(
        y,
        data[g_loc].to_numpy(),
        X,
        Z_loc,
        W,
        Z_scale,
        x_names=x_names,
        z_loc_names=z_loc_names,
        w_names=w_names,
        z_scale_names=z_scale_names,
        response=dm_loc.response.name,
        group_name=g_loc,
        meta={"location_formula": location, "scale_formula": scale, "dropped_rows": dropped},
    )
