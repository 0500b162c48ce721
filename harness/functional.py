"""Pure tensor helpers shared by method files.

Methods import from here, never from ``harness.protocols``: nothing in this module owns a loop, an optimizer
step, data movement or timing.
"""

from __future__ import annotations
