"""Fitting one real dataset: formulas -> MelsmData -> fit -> tables, figures, comparison.

* :mod:`.formula` — mixed-model formulas (formulae) to :class:`~simstudy.model.data.MelsmData`;
* :mod:`.fit_formula` — :func:`fit_formula`, the Python entry point;
* :mod:`.commands` — ``simstudy fit`` / ``simstudy compare``: summaries and fit directories;
* :mod:`.plots` — PIP, funnel and outcome figures of one fit;
* :mod:`.compare` — PSIS-LOO model comparison.
"""
