"""Empirical risk minimisation: the reference every DG method is measured against."""

from __future__ import annotations

from harness.core.method import Method
from harness.core.registry import register_method


@register_method("erm")
class ERM(Method):
    """ERM (Vapnik, "Statistical Learning Theory", 1998): minimise the average training loss.

    DomainBed's finding is that this, tuned fairly, is hard to beat; the base
    class already provides the plain cross-entropy step, so nothing is overridden.
    """

    family = "dg"
    protocols = frozenset({"supervised"})
    hparams = {}
