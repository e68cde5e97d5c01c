"""What the benchmark scripts share: whether this CPU can measure bfloat16 at all.

A CPU without bfloat16 in hardware (x86 without AVX512-BF16 or AMX, which is most laptops) still runs
bf16 autocast, but PyTorch then converts every operand and computes in float32: a bf16 training step
takes about ten times a float32 one. Such a row measures the emulation, not the code, and makes the
script several times longer, so the scripts skip it and say why. `--force-bf16` measures it anyway.
"""

from __future__ import annotations

import platform

from minilm.hardware import bf16_native


def bf16_skip_reason(force: bool = False) -> str | None:
    """None when this CPU computes bfloat16 in hardware (or `force`); otherwise the line that says why
    the bf16 rows are skipped.

    The detection is the package's (`bf16_native`, which the default precision follows). Apple
    silicon is taken to have it (M2 and later have BF16 instructions), as PyTorch does not report it.
    """
    if force or bf16_native("cpu"):
        return None
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return None
    return (f"bf16 rows skipped: this CPU ({platform.machine()}) has no bfloat16 in hardware (neither AVX512-BF16 "
            f"nor AMX), so PyTorch emulates it at about a tenth of float32's speed; --force-bf16 measures them anyway")
