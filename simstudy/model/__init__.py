"""The SS-MELSM itself; knows nothing of studies, files or Dask.

* :mod:`.data` — :class:`MelsmData`: validated arrays and per-group sufficient statistics;
* :mod:`.priors` — prior specifications (pi, SD-prior families, LKJ) and Bayes factors;
* :mod:`.ssmelsm` — the NumPyro model with marginalised indicators and Rao-Blackwellised PIPs;
* :mod:`.sampler` — compile-once NUTS: :func:`fit`, :func:`fit_batch`;
* :mod:`.chains` — parallel chains for single fits (same draws as sequential);
* :mod:`.result` — :class:`FitResult` (ArviZ DataTree, diagnostics, LOO).

Importing :mod:`.ssmelsm` or :mod:`.sampler` starts JAX (in float64).
"""
