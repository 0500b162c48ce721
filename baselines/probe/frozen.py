"""Frozen encoders, probed as they are: the one method of the probe protocol."""

from __future__ import annotations

from harness.core.method import Method
from harness.core.registry import register_method


@register_method("frozen")
class Frozen(Method):
    """No training: the case's encoder stays frozen and only the probes are fitted on its features.

    The probe protocol (``harness/protocols/probe.py``) measures encoders and preprocessing, not a training rule,
    so it has no method hook; this method is how a user asks for it (``pytest suites/ --method=frozen``), and the
    records of probe cases carry its name.
    """

    family = "probe"
    protocols = frozenset({"probe"})
    hparams = {}
