"""simstudy: simulation and sensitivity studies of the SS-MELSM.

The package is one pipeline, a sub-package per stage (data flows one way)::

    model/     the SS-MELSM: MelsmData, priors, the NumPyro model, compile-once NUTS, FitResult
    methods/   comparator methods that flag groups without MCMC (two-stage HLM)
    study/     a simulation study: design -> generate -> fit -> score -> Zarr store (Dask runner)
    evaluate/  what a study found, from the store only: metrics with MCSEs, figures, report
    realdata/  one real dataset: formulas -> fit -> group tables, figures, LOO comparison
    datasets/  shipped data (Saeb)

The names a user types are re-exported here::

    import simstudy
    data, truth = simstudy.generate(simstudy.GeneratorSpec(n_groups=50), seed=1)
    result = simstudy.fit(data, simstudy.Priors(pi=0.5))
    fit = simstudy.fit_formula(df, location="y ~ x + (1 | g)", scale="~ x + (1 | g)")

They are imported lazily so ``import simstudy`` (and ``simstudy --help``) stays fast: JAX
starts only when a fit is made.
"""

__version__ = "0.1.0"

_LAZY = {
    "fit": ("simstudy.model.sampler", "fit"),
    "fit_batch": ("simstudy.model.sampler", "fit_batch"),
    "MCMCSettings": ("simstudy.model.sampler", "MCMCSettings"),
    "MelsmData": ("simstudy.model.data", "MelsmData"),
    "Priors": ("simstudy.model.priors", "Priors"),
    "SDPrior": ("simstudy.model.priors", "SDPrior"),
    "FitResult": ("simstudy.model.result", "FitResult"),
    "generate": ("simstudy.study.generate", "generate"),
    "GeneratorSpec": ("simstudy.study.generate", "GeneratorSpec"),
    "load_design": ("simstudy.study.design", "load_design"),
    "run_study": ("simstudy.study.runner", "run_study"),
    "open_results": ("simstudy.study.store", "open_results"),
    "summarize": ("simstudy.evaluate.summary", "summarize"),
    "fit_formula": ("simstudy.realdata.fit_formula", "fit_formula"),
    "make_priors": ("simstudy.realdata.fit_formula", "make_priors"),
    "compare_fits": ("simstudy.realdata.compare", "compare_fits"),
    "print_summary": ("simstudy.realdata.summary", "print_summary"),
    "load_saeb": ("simstudy.datasets", "load_saeb"),
    "add_saeb_predictors": ("simstudy.datasets", "add_saeb_predictors"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'simstudy' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
