r"""Sampling on the unit scale: an exact change of variables for a response far from it.

NUTS starts its adaptation at unit step size and mass matrix, and the sufficient statistics of
the Gaussian likelihood (``RSS_j = yy_j - 2 theta' Ay_j + theta' AA_j theta``) cancel
catastrophically when ``|mean(y)|`` dwarfs ``sd(y)``: a response shifted by 1e9 made every
transition diverge, one scaled by 1e300 broke the least-squares start. So a response outside the
unit band (``sd(y)`` outside ``[1e-2, 1e2]`` or ``|mean(y)| > 100 sd(y)``) is sampled as

.. math:: y^* = (y - c) / s,\qquad c = \mathrm{mean}(y),\ s = \mathrm{sd}(y),

with every prior moved along, so that the posterior is *exactly* the posterior of the model on
the data's own scale (the same model, priors in the data's units, as ivd states them):

* location fixed effects ``beta = s beta* (+ c on the intercept)``: prior means and SDs divided by
  ``s`` (the intercept's mean also shifted by ``-c/s``);
* location random effects and their SDs ``u = s u*``, ``tau_loc = s tau_loc*``: each SD prior's
  scale divided by ``s`` (an exponential's rate multiplied by it); the LKJ correlations, the
  scale random effects ``t``, their SDs, the indicators and pi are unit-free and unchanged;
* scale fixed effects: ``log sigma = log sigma* + log s``, so the scale intercept's prior mean
  is moved by ``-log s``;
* the likelihood changes by the constant ``-N log s``.

The draws are mapped back (:meth:`ResponseScaling.posterior`) before anything else sees them:
posterior, group means and SDs, log-likelihood and LOO are all on the data's scale. R-hat and
ESS are invariant under these increasing affine maps. A shift needs an intercept column in the
location design, a rescaling one in the scale design; without them that part is skipped.

Responses inside the band are sampled as given (``ResponseScaling.identity``), so fits of
unit-scale data, the simulation grid's included, are unchanged draw for draw.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["ResponseScaling", "response_scaling", "UNIT_SD_BAND", "MAX_MEAN_OVER_SD"]

#: a response whose SD lies in this band (and whose mean is within MAX_MEAN_OVER_SD SDs of 0) is
#: sampled as given
UNIT_SD_BAND = (1e-2, 1e2)
MAX_MEAN_OVER_SD = 1e2


@dataclass(frozen=True)
class ResponseScaling:
    """``y* = (y - shift) / scale`` and the matching change of every prior and draw."""

    shift: float = 0.0
    scale: float = 1.0
    x_intercept: int | None = None  # column of X holding the intercept (needed for a shift)
    w_intercept: int | None = None  # column of W holding the scale intercept (needed for a rescaling)

    @property
    def identity(self) -> bool:
        return self.shift == 0.0 and self.scale == 1.0

    def describe(self) -> dict:
        return {"shift": self.shift, "scale": self.scale}

    # ------------------------------------------------------------------ forward
    def data(self, data):
        """``data`` with the response ``(y - shift) / scale`` (everything else as is)."""
        if self.identity:
            return data
        return dataclasses.replace(data, y=(data.y - self.shift) / self.scale, meta=dict(data.meta))

    def hyper(self, hyper: dict, q_loc: int) -> dict:
        """Prior values of :func:`simstudy.model.ssmelsm.hyper_arrays` (on the data's scale)
        for the sampled scale; ``q_loc``: the number of location random effects (the first
        rows of ``sd_prior``)."""
        if self.identity:
            return hyper
        s, c = self.scale, self.shift
        out = dict(hyper)
        beta_mean = np.array(hyper["beta_mean"], dtype=np.float64) / s
        if self.x_intercept is not None:
            beta_mean[self.x_intercept] -= c / s
        out["beta_mean"] = beta_mean
        out["beta_sd"] = np.array(hyper["beta_sd"], dtype=np.float64) / s
        eta_mean = np.array(hyper["eta_mean"], dtype=np.float64)
        if self.w_intercept is not None:
            eta_mean[self.w_intercept] -= math.log(s)
        out["eta_mean"] = eta_mean
        sd = np.array(hyper["sd_prior"], dtype=np.float64)
        for q in range(q_loc):  # family code: 0 half-t(df, scale), 1 half-normal, 2 half-Cauchy, 3 exponential(rate)
            code = int(sd[q, 0])
            if code == 0:
                sd[q, 2] /= s
            elif code in (1, 2):
                sd[q, 1] /= s
            else:
                sd[q, 1] *= s
        out["sd_prior"] = sd
        return out

    # ------------------------------------------------------------------ back
    def posterior(self, draws: dict, q_loc: int) -> dict:
        """Draws of the sampled scale (``beta``, ``eta``, ``tau``, ``u``, ``group_mean``,
        ``group_sd``, ...; leading axes free) mapped to the data's scale."""
        if self.identity:
            return draws
        s, c = self.scale, self.shift
        out = dict(draws)
        if "beta" in draws:
            beta = np.asarray(draws["beta"], dtype=np.float64) * s
            if self.x_intercept is not None:
                beta[..., self.x_intercept] += c
            out["beta"] = beta
        if "eta" in draws:
            eta = np.array(draws["eta"], dtype=np.float64)
            if self.w_intercept is not None:
                eta[..., self.w_intercept] += math.log(s)
            out["eta"] = eta
        if "tau" in draws:
            tau = np.array(draws["tau"], dtype=np.float64)
            tau[..., :q_loc] *= s
            out["tau"] = tau
        if "u" in draws:
            out["u"] = np.asarray(draws["u"], dtype=np.float64) * s
        if "group_mean" in draws:
            out["group_mean"] = np.asarray(draws["group_mean"], dtype=np.float64) * s + c
        if "group_sd" in draws:
            out["group_sd"] = np.asarray(draws["group_sd"], dtype=np.float64) * s
        return out


def response_scaling(data, standardize: bool | None = None) -> ResponseScaling:
    """How :func:`simstudy.model.sampler.fit_batch` samples ``data``: ``standardize=None``
    (default) standardises a response outside the unit band only, ``True`` always, ``False``
    never."""
    from .ssmelsm import intercept_column

    if standardize is not None and not isinstance(standardize, (bool, np.bool_)):
        raise ValueError(f"standardize must be True, False or None (automatic), got {standardize!r}")
    if standardize is False:
        return ResponseScaling()
    y = data.y
    c, s = float(np.mean(y)), float(np.std(y, ddof=1))
    if not (math.isfinite(c) and math.isfinite(s) and s > 0):
        return ResponseScaling()  # MelsmData refuses such responses; nothing to gain here
    if standardize is None and UNIT_SD_BAND[0] <= s <= UNIT_SD_BAND[1] and abs(c) <= MAX_MEAN_OVER_SD * s:
        return ResponseScaling()
    ix, iw = intercept_column(data.X), intercept_column(data.W)
    return ResponseScaling(shift=c if ix is not None else 0.0, scale=s if iw is not None else 1.0,
                           x_intercept=ix, w_intercept=iw)


#: ``simstudy fit`` warns when sd(y) exceeds the location SD prior's scale this many times
PRIOR_UNITS_RATIO = 1e2


def prior_units_advice(data, priors) -> str | None:
    """A warning when the location random-effect SD prior is far too narrow for the response's
    units (``sd(y)`` more than :data:`PRIOR_UNITS_RATIO` times its scale), else None.

    The SD priors are in the response's units (as in ivd), so a response in units a million
    times smaller gets a prior that pins the location SDs near 0: a different model, not just
    a rescaled fit (the sampling itself is exact at any scale, :class:`ResponseScaling`)."""
    sd_prior = priors.location_sd
    p = sd_prior.params
    scale = {"half_t": p[-1], "half_normal": p[0], "half_cauchy": p[0]}.get(sd_prior.family, 1.0 / p[0])
    s = float(np.std(data.y, ddof=1))
    if not (math.isfinite(s) and s > PRIOR_UNITS_RATIO * scale):
        return None
    same = {"half_t": f"half_t({p[0]:g}, {p[1] * s:.3g})", "half_normal": f"half_normal({p[0] * s:.3g})",
            "half_cauchy": f"half_cauchy({p[0] * s:.3g})"}.get(sd_prior.family, f"exponential({p[0] / s:.3g})")
    return (f"the response's SD is {s:.3g}, but the location random-effect SD prior {sd_prior} is in the response's "
            f"units (scale {scale:g}): at this scale it pins the location SDs near 0 (expect divergent transitions, "
            f"and PIPs that differ from those of the same data in other units). Give --location-sd \"{same}\" "
            "(the same prior relative to the response) or rescale the response")
