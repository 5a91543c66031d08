"""Indicator combinations of the marginalised spike-and-slab: shared by the model
(:mod:`simstudy.model.ssmelsm`), its compiled kernel (:mod:`simstudy.model.native`) and the
fit results (:mod:`simstudy.model.result`). Pure NumPy, imports nothing of the package."""

from __future__ import annotations

import itertools

import numpy as np


def indicator_combos(k: int) -> np.ndarray:
    """All ``2^k`` indicator combinations, shape (2^k, k), row 0 = all excluded."""
    return np.array(list(itertools.product((0.0, 1.0), repeat=k)))
