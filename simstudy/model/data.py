"""Validated arrays for one two-level dataset (observations ``i`` in groups ``j``).

A :class:`MelsmData` holds everything the SS-MELSM needs and nothing about priors or
sampling:

* ``y`` (N,) response;
* ``group`` (N,) integer group index in ``0..J-1`` and ``group_labels`` (J,);
* location design: fixed ``X`` (N, P) and random ``Z_loc`` (N, Q_loc);
* scale design: fixed ``W`` (N, S) and random ``Z_scale`` (N, K);
* the column names of every design matrix.

``mu_i = X_i beta + Z_loc_i u_g(i)`` and ``log sigma_i = W_i eta + Z_scale_i t_g(i)``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


class DataError(ValueError):
    """Raised when a dataset cannot be used; the message names the field and the fix."""


class ConstantGroupWarning(UserWarning):
    """Some groups have the same response in every observation (within-group SD 0)."""


@dataclass(frozen=True)
class GroupStats:
    """Per-group sufficient statistics for the Gaussian likelihood.

    With ``A_i = [X_i, Z_loc_i]`` and ``theta_j = [beta, u_j]`` the residual sum of squares
    of group ``j`` is ``RSS_j = yy_j - 2 theta_j' Ay_j + theta_j' AA_j theta_j``.
    ``W_mean``/``Z_scale_mean`` are group means of the scale design (exact group values when
    the scale design is constant within groups); ``X_mean``/``Z_loc_mean`` give the group's
    mean of ``mu``.
    """

    n: np.ndarray  # (J,)
    yy: np.ndarray  # (J,)
    Ay: np.ndarray  # (J, P + Q_loc)
    AA: np.ndarray  # (J, P + Q_loc, P + Q_loc)
    X_mean: np.ndarray  # (J, P)
    Z_loc_mean: np.ndarray  # (J, Q_loc)
    W_mean: np.ndarray  # (J, S)
    Z_scale_mean: np.ndarray  # (J, K)
    y_mean: np.ndarray  # (J,)
    y_sd: np.ndarray  # (J,) sample SD (ddof=1), NaN for singletons


def _as_matrix(name: str, value, n: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"{name}: expected a 2-D design matrix (N, columns), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise DataError(f"{name}: has {arr.shape[0]} rows but y has {n}; all arrays need one row per observation")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise DataError(f"{name}: non-numeric values (dtype {arr.dtype}); code categorical predictors as numbers first")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])[:5]
        raise DataError(f"{name}: NaN or infinite values in rows {rows.tolist()} (0-based); drop or impute them")
    return arr


#: largest |y| accepted: squares (sums of squares, variances) stay finite in float64
MAX_ABS_RESPONSE = 1e150
#: smallest sd(y) accepted: squares stay above float64's smallest normal number
MIN_RESPONSE_SD = 1e-150
#: smallest sd(y) / max|y| accepted: below it the variation is at float64's resolution of the values
MIN_RELATIVE_SD = 1e-12


def _check_magnitude(y: np.ndarray, response: str) -> None:
    """Refuse responses whose size float64 cannot carry through a fit (any offset and scale in
    between are fine: the sampler works on the standardised response, see
    :mod:`simstudy.model.response_scale`)."""
    top = float(np.max(np.abs(y)))
    if top > MAX_ABS_RESPONSE:
        raise DataError(f"y ({response}): values as large as {top:.3g}; their squares overflow float64 (the largest "
                        f"value accepted is {MAX_ABS_RESPONSE:g}): rescale the response first, e.g. divide it by "
                        f"1e{int(math.floor(math.log10(top)))}")
    sd = float(np.std(y))
    if sd < MIN_RESPONSE_SD:
        raise DataError(f"y ({response}): standard deviation {sd:.3g} is below {MIN_RESPONSE_SD:g}, where its square "
                        "underflows float64: rescale the response first (multiply it by a power of 10)")
    if sd < MIN_RELATIVE_SD * top:
        raise DataError(f"y ({response}): the values vary by an SD of {sd:.3g} around magnitudes up to {top:.3g}, "
                        f"a relative variation below {MIN_RELATIVE_SD:g}, at the resolution of float64: subtract a "
                        "constant (e.g. the mean) from the response first")


def _names(name: str, names, width: int, default_prefix: str) -> tuple[str, ...]:
    if names is None:
        return tuple(f"{default_prefix}{k}" for k in range(width))
    names = tuple(str(n) for n in names)
    if len(names) != width:
        raise DataError(f"{name}: {len(names)} names for {width} columns")
    if len(set(names)) != len(names):
        raise DataError(f"{name}: duplicate column names {names}")
    return names


@dataclass(frozen=True, eq=False)
class MelsmData:
    """One dataset for the (SS-)MELSM. Build with :meth:`from_arrays` (validating) or
    :meth:`intercepts_only`."""

    y: np.ndarray
    group: np.ndarray
    X: np.ndarray
    Z_loc: np.ndarray
    W: np.ndarray
    Z_scale: np.ndarray
    group_labels: np.ndarray
    x_names: tuple[str, ...]
    z_loc_names: tuple[str, ...]
    w_names: tuple[str, ...]
    z_scale_names: tuple[str, ...]
    response: str = "y"
    group_name: str = "group"
    meta: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(
        cls,
        y,
        group,
        X=None,
        Z_loc=None,
        W=None,
        Z_scale=None,
        *,
        x_names=None,
        z_loc_names=None,
        w_names=None,
        z_scale_names=None,
        group_labels=None,
        response: str = "y",
        group_name: str = "group",
        meta: dict | None = None,
    ) -> "MelsmData":
        """Validate and build. ``group`` may hold any labels; they are mapped to ``0..J-1``
        in sorted order unless ``group_labels`` gives the order (then ``group`` must already
        be integer codes ``0..J-1``). Missing design matrices default to an intercept column.
        """
        y = np.asarray(y)
        if y.ndim != 1:
            raise DataError(f"y: expected a 1-D response, got shape {y.shape}")
        if not np.issubdtype(y.dtype, np.number):
            raise DataError(f"y ({response}): non-numeric values (dtype {y.dtype})")
        y = y.astype(np.float64)
        n = y.shape[0]
        if n < 2:
            raise DataError("y: needs at least 2 observations")
        bad = ~np.isfinite(y)
        if bad.any():
            raise DataError(
                f"y ({response}): NaN or infinite values in rows {np.nonzero(bad)[0][:5].tolist()} (0-based); drop them"
            )
        if np.ptp(y) == 0:
            raise DataError(f"y ({response}): constant response; a location-scale model needs variation")
        _check_magnitude(y, response)

        group = np.asarray(group)
        if group.shape != (n,):
            raise DataError(f"group: has shape {group.shape} but y has {n} observations")
        if group_labels is None:
            if group.dtype.kind == "f" and not np.all(np.isfinite(group)):
                raise DataError("group: missing group labels (NaN)")
            labels, codes = np.unique(group, return_inverse=True)
        else:
            labels = np.asarray(group_labels)
            if not np.issubdtype(group.dtype, np.integer):
                raise DataError("group: with group_labels given, group must be integer codes 0..J-1")
            codes = group.astype(np.int64)
            if codes.min() < 0 or codes.max() >= len(labels):
                raise DataError(f"group: codes must lie in 0..{len(labels) - 1} (one per group label)")
            if len(np.unique(codes)) != len(labels):
                raise DataError("group: every group label needs at least one observation")
        J = len(labels)
        if J < 2:
            raise DataError(f"group: found {J} group(s); a multilevel model needs at least 2")

        ones = np.ones((n, 1))
        X = _as_matrix("X (location fixed effects)", ones if X is None else X, n)
        Z_loc = _as_matrix("Z_loc (location random effects)", ones if Z_loc is None else Z_loc, n)
        W = _as_matrix("W (scale fixed effects)", ones if W is None else W, n)
        Z_scale = _as_matrix("Z_scale (scale random effects)", ones if Z_scale is None else Z_scale, n)
        if Z_scale.shape[1] < 1:
            raise DataError("Z_scale: the SS-MELSM needs at least one scale random effect")
        if Z_scale.shape[1] > 4:
            raise DataError(f"Z_scale: {Z_scale.shape[1]} scale random effects; at most 4 (2^K indicator sums)")

        data = cls(
            y=y,
            group=codes.astype(np.int32),
            X=X,
            Z_loc=Z_loc,
            W=W,
            Z_scale=Z_scale,
            group_labels=labels,
            x_names=_names("x_names", x_names, X.shape[1], "x"),
            z_loc_names=_names("z_loc_names", z_loc_names, Z_loc.shape[1], "zl"),
            w_names=_names("w_names", w_names, W.shape[1], "w"),
            z_scale_names=_names("z_scale_names", z_scale_names, Z_scale.shape[1], "zs"),
            response=response,
            group_name=group_name,
            meta=dict(meta or {}),
        )
        singles = int(np.sum(data.group_sizes == 1))
        if singles:
            warnings.warn(
                f"{singles} group(s) have a single observation; their scale effects are informed by the prior only",
                stacklevel=2,
            )
        constant = data.constant_groups()
        if len(constant):
            shown = ", ".join(str(g) for g in constant[:5]) + (f" and {len(constant) - 5} more" if len(constant) > 5 else "")
            warnings.warn(
                f"{len(constant)} group(s) of {group_name!r} have the same {response!r} in every observation "
                f"({shown}): their within-group SD is 0, which the scale model can only approach by sending the "
                "group's scale effect towards minus infinity. Expect divergent transitions and a high R-hat, and a "
                "PIP of 1 (BF10 unbounded) for these groups that says nothing about real consistency; check whether "
                "the values are right (a default, a copy, a censored or rounded score), or leave those groups out",
                ConstantGroupWarning,
                stacklevel=2,
            )
        return data

    def constant_groups(self) -> np.ndarray:
        """Labels of groups with at least two observations that all have the same response."""
        lo = np.full(self.n_groups, np.inf)
        hi = np.full(self.n_groups, -np.inf)
        np.minimum.at(lo, self.group, self.y)
        np.maximum.at(hi, self.group, self.y)
        return self.group_labels[(self.group_sizes >= 2) & (hi == lo)]

    @classmethod
    def intercepts_only(cls, y, group, **kwargs) -> "MelsmData":
        """Random-intercept location and scale model (ivd's Model 1)."""
        names = dict(x_names=["Intercept"], z_loc_names=["Intercept"], w_names=["Intercept"], z_scale_names=["Intercept"])
        names.update(kwargs)
        return cls.from_arrays(y, group, **names)

    # ------------------------------------------------------------------ shape facts
    @property
    def n_obs(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_groups(self) -> int:
        return int(len(self.group_labels))

    @cached_property
    def group_sizes(self) -> np.ndarray:
        return np.bincount(self.group, minlength=self.n_groups)

    @property
    def dims(self) -> dict[str, int]:
        """P, Q_loc, S, K: the widths of the four design matrices."""
        return dict(P=self.X.shape[1], Q_loc=self.Z_loc.shape[1], S=self.W.shape[1], K=self.Z_scale.shape[1])

    @cached_property
    def scale_is_group_level(self) -> bool:
        """True when W and Z_scale are constant within every group, so the likelihood
        reduces to per-group sufficient statistics."""
        for M in (self.W, self.Z_scale):
            means = self._group_mean(M)
            if not np.allclose(M, means[self.group], rtol=0, atol=1e-12):
                return False
        return True

    def group_sum(self, M: np.ndarray) -> np.ndarray:
        """Per-group sums of the rows of ``M`` (N, ...): (J, ...)."""
        sums = np.zeros((self.n_groups,) + M.shape[1:])
        np.add.at(sums, self.group, M)
        return sums

    def _group_mean(self, M: np.ndarray) -> np.ndarray:
        return self.group_sum(M) / self.group_sizes.reshape((-1,) + (1,) * (M.ndim - 1))

    @cached_property
    def group_basis(self):
        """Each group's designs in a basis of its own columns, rows padded per group: the layout
        of the compiled likelihood kernel (:mod:`simstudy.model.group_basis`), computed once."""
        from .group_basis import group_basis

        return group_basis(self)

    @cached_property
    def stats(self) -> GroupStats:
        A = np.concatenate([self.X, self.Z_loc], axis=1)
        J = self.n_groups
        yy = np.bincount(self.group, weights=self.y**2, minlength=J)
        Ay = np.zeros((J, A.shape[1]))
        np.add.at(Ay, self.group, A * self.y[:, None])
        AA = np.zeros((J, A.shape[1], A.shape[1]))
        np.add.at(AA, self.group, A[:, :, None] * A[:, None, :])
        y_mean = self._group_mean(self.y)
        dev2 = np.bincount(self.group, weights=(self.y - y_mean[self.group]) ** 2, minlength=J)
        with np.errstate(invalid="ignore", divide="ignore"):
            y_sd = np.where(self.group_sizes > 1, np.sqrt(dev2 / (self.group_sizes - 1)), np.nan)
        return GroupStats(
            n=self.group_sizes.astype(np.float64),
            yy=yy,
            Ay=Ay,
            AA=AA,
            X_mean=self._group_mean(self.X),
            Z_loc_mean=self._group_mean(self.Z_loc),
            W_mean=self._group_mean(self.W),
            Z_scale_mean=self._group_mean(self.Z_scale),
            y_mean=y_mean,
            y_sd=y_sd,
        )

    def shape_signature(self) -> tuple:
        """What a compiled sampler depends on: array shapes and the likelihood path."""
        d = self.dims
        return (self.n_obs, self.n_groups, d["P"], d["Q_loc"], d["S"], d["K"], self.scale_is_group_level)

    def to_frame(self):
        """A tidy DataFrame: one row per observation with group label and design columns."""
        import pandas as pd

        cols = {self.group_name: self.group_labels[self.group], self.response: self.y}
        for prefix, M, names in (
            ("X", self.X, self.x_names),
            ("Zl", self.Z_loc, self.z_loc_names),
            ("W", self.W, self.w_names),
            ("Zs", self.Z_scale, self.z_scale_names),
        ):
            for k, name in enumerate(names):
                cols[f"{prefix}:{name}"] = M[:, k]
        return pd.DataFrame(cols)
