"""A pytest-style benchmark harness for machine-learning methods."""

from harness import cpu_numerics  # noqa: F401  (first: pins CPU numerics before torch runs an operation)
from harness.core.method import Batch, Method, State
from harness.core.registry import create_method, register_method

__version__ = "0.1.0"
__all__ = ["Batch", "Method", "State", "create_method", "register_method", "__version__"]
