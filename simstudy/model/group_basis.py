r"""Each group's designs written in a small basis of its own columns.

Within group ``j`` the stacked design ``D_j = [X, Z_loc, W, Z_scale]`` (``n_j`` x ``m``) often
has low rank: a group-level predictor is a multiple of the intercept, an interaction with it a
multiple of the student-level column. With ``D_j = B_j M_j`` for ``b`` columns ``B_j`` of
``D_j`` itself (the intercept first where the group's design spans it),

.. math:: \mu_i = B_i(M^X_j\beta + M^{Z}_j u_j),\quad W_i\eta = B_i M^W_j\eta,\quad
          Z^{sc}_{ik} t_{jk} = B_i M^{sc}_{j,\cdot k} t_{jk},

so the per-observation work of the likelihood scales with ``b`` (2 for Saeb M3: the intercept
and ``student_ses``) rather than with the ``m`` design columns (11). Rows are sorted by group
and each group padded to a multiple of ``lanes`` rows with ``y = 0`` and basis rows 0, the
layout of :mod:`simstudy.model.native`. Pure NumPy; exact up to rounding (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: data.py imports this module (MelsmData.group_basis)
    from .data import MelsmData

#: a column joins the basis when the part of it the basis so far cannot express exceeds this
#: fraction of its norm
RANK_TOL = 1e-10
#: coefficients whose contribution is below this fraction of the column's size are set to 0
SNAP_TOL = 1e-13


@dataclass(frozen=True)
class GroupBasis:
    y: np.ndarray  # (Np,) response, sorted by group, padded with 0
    basis_t: np.ndarray  # (b, Np) each row's basis values, transposed; padded rows 0
    offsets: np.ndarray  # (J + 1,) int64, group j's rows are offsets[j]:offsets[j + 1]
    coef: np.ndarray  # (J, b, m) D_j = B_j coef_j, columns as [X, Z_loc, W, Z_scale]
    widths: tuple[int, int, int, int]  # (P, Q_loc, S, K)
    #: (J, 1 + K) int64: 0 where the scale predictor (W eta, then each Z_scale_k t_k) is
    #: constant in the group (basis column 0 is ones there and its other coefficients are 0)
    varies: np.ndarray
    max_error: float  # largest |B_j coef_j - D_j|, relative to the column's size

    @property
    def width(self) -> int:
        return self.basis_t.shape[0]

    def blocks(self) -> dict[str, np.ndarray]:
        """``coef`` split by design: coef_X (J, b, P), coef_Z_loc, coef_W, coef_Z_scale."""
        edges = np.cumsum((0,) + self.widths)
        names = ("coef_X", "coef_Z_loc", "coef_W", "coef_Z_scale")
        return {n: np.ascontiguousarray(self.coef[:, :, a:b]) for n, a, b in zip(names, edges[:-1], edges[1:])}


def _select_columns(candidates: list[np.ndarray]) -> list[int]:
    """Indices of ``candidates`` chosen greedily, in order, while each adds a new direction
    (modified Gram-Schmidt against the ones chosen)."""
    chosen, Q = [], []
    for idx, col in enumerate(candidates):
        norm = np.linalg.norm(col)
        if norm == 0.0:
            continue
        resid = col.astype(np.float64, copy=True)
        for q in Q:
            resid -= (q @ resid) * q
        rn = np.linalg.norm(resid)
        if rn > RANK_TOL * norm:
            chosen.append(idx)
            Q.append(resid / rn)
    return chosen


def _group_basis(D: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(B, M, ones_first)`` with ``D = B M`` for one group's rows."""
    n, m = D.shape
    ones = np.ones(n)
    candidates = [ones] + [D[:, c] for c in range(m)]
    chosen = _select_columns(candidates[1:])
    # the intercept first when the group's design spans it: its predictors that are constant in
    # the group then need no per-row exponential
    with_ones = _select_columns(candidates)
    ones_first = bool(with_ones) and with_ones[0] == 0 and len(with_ones) == len(chosen)
    B = np.column_stack([candidates[i] for i in with_ones]) if ones_first else (
        D[:, chosen] if chosen else np.zeros((n, 0)))
    M = np.linalg.lstsq(B, D, rcond=None)[0] if B.shape[1] else np.zeros((0, m))
    scale = np.maximum(np.max(np.abs(D), axis=0), 1e-300)  # (m,)
    size = np.max(np.abs(B), axis=0) if B.shape[1] else np.zeros(0)  # (b,)
    M[np.abs(M) * size[:, None] <= SNAP_TOL * scale[None, :]] = 0.0
    if not ones_first:
        for pos, c in enumerate(chosen):  # a chosen column is itself: exact unit coefficients
            M[:, c] = 0.0
            M[pos, c] = 1.0
    return B, M, ones_first


#: rows of each group are padded to a multiple of this (the compiled kernel's vector width)
LANES = 8


def group_basis(data: MelsmData, lanes: int = LANES) -> GroupBasis:
    """The per-group basis layout of ``data`` (see the module docstring)."""
    order = np.argsort(data.group, kind="stable")
    g = data.group[order]
    D = np.concatenate([data.X, data.Z_loc, data.W, data.Z_scale], axis=1)[order]
    widths = (data.X.shape[1], data.Z_loc.shape[1], data.W.shape[1], data.Z_scale.shape[1])
    P, Ql, S, K = widths
    J = data.n_groups
    start = np.searchsorted(g, np.arange(J + 1))
    parts = [_group_basis(D[start[j]:start[j + 1]]) for j in range(J)]
    b = max(1, max(B.shape[1] for B, _, _ in parts))
    sizes = np.diff(start)
    padded = -(-sizes // lanes) * lanes
    offsets = np.concatenate([[0], np.cumsum(padded)]).astype(np.int64)
    y = np.zeros(offsets[-1])
    basis_t = np.zeros((b, offsets[-1]))
    coef = np.zeros((J, b, D.shape[1]))
    varies = np.ones((J, 1 + K), dtype=np.int64)
    max_error = 0.0
    y_sorted = data.y[order]
    for j, (B, M, ones_first) in enumerate(parts):
        rows = slice(offsets[j], offsets[j] + sizes[j])
        y[rows] = y_sorted[start[j]:start[j + 1]]
        basis_t[: B.shape[1], rows] = B.T
        coef[j, : M.shape[0]] = M
        Dj = D[start[j]:start[j + 1]]
        if Dj.size:
            err = np.abs(B @ M - Dj) / np.maximum(np.max(np.abs(Dj), axis=0), 1e-300)
            max_error = max(max_error, float(np.max(err)))
        if ones_first:
            w_coef = M[1:, P + Ql: P + Ql + S]
            varies[j, 0] = int(np.any(w_coef != 0.0))
            for k in range(K):
                varies[j, 1 + k] = int(np.any(M[1:, P + Ql + S + k] != 0.0))
    return GroupBasis(y, basis_t, offsets, coef, widths, varies, max_error)
