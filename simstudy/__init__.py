"""simstudy: simulation and sensitivity studies of the SS-MELSM.

``simstudy.fit`` is the module (``from simstudy.fit import fit``); the names below are
re-exported here. Single fits::

    from simstudy import fit_formula, load_saeb, compare_fits
    fit = fit_formula(df, location="y ~ x + (1 | g)", scale="~ x + (1 | g)", pi=0.5)

The names below are imported lazily so ``import simstudy`` (and ``simstudy --help``) stays
fast: JAX starts only when a fit is made.
"""

__version__ = "0.1.0"

_LAZY = {
    "MelsmData": ("simstudy.data", "MelsmData"),
    "Priors": ("simstudy.priors", "Priors"),
    "SDPrior": ("simstudy.priors", "SDPrior"),
    "fit_batch": ("simstudy.fit", "fit_batch"),
    "GeneratorSpec": ("simstudy.generate", "GeneratorSpec"),
    "load_design": ("simstudy.design", "load_design"),
    "run_study": ("simstudy.runner", "run_study"),
    "summarize": ("simstudy.metrics", "summarize"),
    "fit_formula": ("simstudy.api", "fit_formula"),
    "make_priors": ("simstudy.api", "make_priors"),
    "load_saeb": ("simstudy.datasets", "load_saeb"),
    "add_saeb_predictors": ("simstudy.datasets", "add_saeb_predictors"),
    "compare_fits": ("simstudy.compare", "compare_fits"),
    "print_summary": ("simstudy.fitting_cli", "print_summary"),
    "open_results": ("simstudy.store", "open_results"),
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
