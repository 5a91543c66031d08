"""Comparator methods: flag groups from the same data as the SS-MELSM, without MCMC.

``METHODS`` lists every method name a study design may ask for: ``ss_melsm`` (the model)
and the flag rules of the two-stage HLM (:mod:`simstudy.methods.hlm`, run with
``simstudy.methods.hlm.hlm(data, seed)``).
"""

from . import hlm
from .hlm import COMPARATORS

#: every method of a study: the SS-MELSM first, then the comparators
METHODS = ("ss_melsm",) + COMPARATORS

__all__ = ["METHODS", "COMPARATORS", "hlm"]
