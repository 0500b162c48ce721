"""CPU numerics pinned to one instruction set, so a CPU re-run gives the same bits on any x86 machine.

PyTorch picks its vectorised kernels (ATen), its convolution and matmul kernels (oneDNN) and its BLAS code path
(MKL) from the CPU it finds, so the same code rounds differently on an AVX-512 and an AVX2 machine. MKL's results
may also depend on the alignment of its inputs, hence on what the process allocated before, unless its
conditional numerical reproducibility runs in strict mode. Pinning all three to AVX2 removes both sources.

The variables are read when torch runs its first operation, so importing ``harness`` sets them first. A value
already set wins (``ATEN_CPU_CAPABILITY=avx512 ONEDNN_MAX_CPU_ISA=ALL MKL_CBWR=AUTO`` for native speed); every
record states the numerics it ran under (``environment.cpu_numerics``), and verify compares bits only between
records made under the same numerics.
"""

from __future__ import annotations

import os

PINS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2,STRICT"}


def pin() -> None:
    for name, value in PINS.items():
        os.environ.setdefault(name, value)


def settings() -> dict[str, str | None]:
    """The pinned variables as this process sees them."""
    return {name: os.environ.get(name) for name in PINS}


pin()
