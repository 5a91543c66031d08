"""The convergence rule: the one place that says when a fit counts as converged.

A fit is **converged** when, on every hyperparameter (fixed effects ``beta`` and ``eta``,
random-effect SDs ``tau``, the off-diagonal correlations ``corr``, and ``pi`` when it is
sampled),

* the rank-normalised split R-hat is at most :data:`RHAT_MAX` = 1.01, and
* the bulk ESS and the tail ESS (5% and 95% quantiles) are each at least
  :data:`ESS_PER_CHAIN` = 100 per chain (400 for 4 chains),

and no transition diverged after warm-up (Vehtari, Gelman, Simpson, Carpenter & Bürkner
2021, *Rank-normalization, folding, and localization: an improved R-hat*, Bayesian
Analysis 16(2); computed by ArviZ, ``arviz_stats``). A NaN diagnostic of a hyperparameter
(e.g. a chain that never moved) fails the rule. The per-group random effects and
inclusion probabilities are not judged: with J groups they would make the rule a test of
the smallest of J Monte Carlo noises.

The *worst* parameter is the one furthest past its limit, measured as
``max((R-hat - 1) / (RHAT_MAX - 1), ESS_needed / ESS_bulk, ESS_needed / ESS_tail)``
(> 1 fails). :func:`judge` returns it with the largest R-hat and the smallest ESS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: largest acceptable rank-normalised split R-hat
RHAT_MAX = 1.01
#: smallest acceptable bulk and tail ESS per chain
ESS_PER_CHAIN = 100
#: posterior variables judged by the rule (those present in a fit)
HYPER_VARS = ("beta", "eta", "tau", "corr", "pi")


@dataclass(frozen=True)
class Verdict:
    """The rule applied to one fit."""

    converged: bool
    rhat_worst: float  # largest R-hat over the hyperparameters (inf when one is NaN)
    ess_worst: float  # smallest bulk or tail ESS over the hyperparameters (total over chains)
    worst_param: str  # e.g. "tau[scale:Intercept]"; "" when there is nothing to judge
    divergences: int  # after warm-up
    ess_needed: float  # ESS_PER_CHAIN x chains

    @property
    def reason(self) -> str:
        """Why the fit fails the rule ("" when it passes)."""
        parts = []
        if self.rhat_worst > RHAT_MAX:
            parts.append(f"R-hat {self.rhat_worst:.3f} > {RHAT_MAX}")
        if self.ess_worst < self.ess_needed or not math.isfinite(self.ess_worst):
            parts.append(f"ESS {self.ess_worst:.0f} < {self.ess_needed:.0f}")
        if self.divergences:
            parts.append(f"{self.divergences} divergent transitions")
        text = ", ".join(parts)
        return f"{text} (worst: {self.worst_param})" if text and self.worst_param else text


def _label(name: str, da, index: tuple) -> str:
    if not index:
        return name
    labels = [str(da[dim].values[i]) if dim in da.coords else str(i) for dim, i in zip(da.dims, index)]
    return f"{name}[{', '.join(labels)}]"


def parameter_diagnostics(diagnostics: dict) -> list[tuple[str, float, float, float]]:
    """``(name, rhat, ess_bulk, ess_tail)`` for every judged scalar hyperparameter of one fit.
    ``diagnostics``: ``{"rhat" | "ess_bulk" | "ess_tail": xarray.Dataset}`` (a
    :class:`~simstudy.model.result.FitResult`'s ``diagnostics``). Correlations: the strict
    lower triangle only (the diagonal is 1 by construction)."""
    rows = []
    for name in HYPER_VARS:
        if name not in diagnostics["rhat"]:
            continue
        das = [diagnostics[s][name] for s in ("rhat", "ess_bulk", "ess_tail")]
        values = [np.asarray(da.values, dtype=np.float64) for da in das]
        for index in np.ndindex(values[0].shape):
            if name == "corr" and len(index) == 2 and index[0] <= index[1]:
                continue
            rows.append((_label(name, das[0], index),) + tuple(float(v[index]) for v in values))
    return rows


def judge(diagnostics: dict, divergences: int, chains: int) -> Verdict:
    """Apply the rule (module doc) to one fit's diagnostics."""
    need = float(ESS_PER_CHAIN * chains)
    rows = parameter_diagnostics(diagnostics)
    rhat_worst, ess_worst, worst, worst_badness = -math.inf, math.inf, "", -math.inf
    for name, rhat, ess_b, ess_t in rows:
        rhat = rhat if math.isfinite(rhat) else math.inf
        ess = min(e if math.isfinite(e) else 0.0 for e in (ess_b, ess_t))
        badness = max((rhat - 1.0) / (RHAT_MAX - 1.0), need / ess if ess > 0 else math.inf)
        rhat_worst, ess_worst = max(rhat_worst, rhat), min(ess_worst, ess)
        if badness > worst_badness:
            worst, worst_badness = name, badness
    if not rows:
        rhat_worst, ess_worst = math.nan, math.nan
    ok = bool(rows) and rhat_worst <= RHAT_MAX and ess_worst >= need and int(divergences) == 0
    return Verdict(ok, float(rhat_worst), float(ess_worst), worst, int(divergences), need)


def suggest_settings(verdict: Verdict, settings, extensions: int) -> str:
    """A one-line suggestion for a fit that still fails after ``extensions`` extensions.
    ``settings``: the fit's :class:`~simstudy.model.sampler.MCMCSettings`."""
    tips = []
    if verdict.divergences:
        tips.append(f"raise target_accept (now {settings.target_accept:g}, try {min(0.99, settings.target_accept + 0.1):.2f})")
    if verdict.rhat_worst > RHAT_MAX or verdict.ess_worst < verdict.ess_needed or not tips:
        draws_used = settings.draws * (1 + extensions)
        tips.append(f"more draws (used {draws_used} per chain; try --draws {2 * draws_used}) "
                    f"or a longer warm-up (now {settings.warmup}; try --warmup {2 * settings.warmup})")
    return "; ".join(tips)
