"""The hardware: which device to run on, which number format to compute in, and how fast it could go.

Every stage asks this module, so that one policy holds everywhere: the notebooks, the training loop,
the command line and the benchmarks make the same choices.

**Device.** A CUDA GPU if there is one (under torchrun, this process's GPU), else Apple's GPU (MPS) for
a single process, else the CPU. A device asked for by name is checked, with a clear error when it is
missing. (Several processes on a Mac use the CPU: gloo, the CPU's backend, cannot reduce MPS tensors.)

**Precision.** Weights and optimizer state stay in float32. Under autocast the matmuls run in
bfloat16, which has float32's exponent range (no overflow, so no loss scaling) and half its bytes:
tensor cores on Ampere and later GPUs, AMX or AVX512-BF16 on recent x86 CPUs. Where bfloat16 is not
in hardware, "auto" picks float16 on (older) GPUs, which needs a `GradScaler`: it multiplies the loss
so that small gradients do not underflow to zero, and unscales them before the step; and float32
elsewhere, since emulated bfloat16 is slower than float32. On CUDA, float32 matmuls may use TF32.

**Peak FLOP/s**, for MFU (model FLOPs utilisation: the FLOPs a step does over what the hardware
could do). For a known GPU, the vendor's data sheet; for anything else, the best speed of large
matmuls measured here, in the same format (`measure_peak`). A measured peak can come out low when
other programs share the machine; a rate that training reached is a rate the hardware can do, so
`Peak.at_least` raises the peak to it (and says so): an MFU above 100% is never reported.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from dataclasses import dataclass

import torch

# --- the device ---------------------------------------------------------------------------------


def pick_device(requested: str | None = None, local_rank: int = 0, distributed: bool = False) -> str:
    """`requested` if given (checked), else this process's CUDA GPU, else MPS (one process only), else the CPU."""
    if requested is None:
        if torch.cuda.is_available():
            requested = "cuda"
        elif mps_available() and not distributed:
            requested = "mps"
        else:
            requested = "cpu"
    kind = torch.device(requested).type
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {requested!r} asked for, but this PyTorch sees no CUDA GPU; use device='cpu'")
        count = torch.cuda.device_count()
        index = torch.device(requested).index
        index = local_rank if index is None else index
        if index >= count:
            raise RuntimeError(
                f"process {local_rank} on this machine wants GPU {index}, but there are {count}: "
                f"start at most {count} processes per machine (torchrun --nproc_per_node={count})"
            )
        return f"cuda:{index}"
    if kind == "mps" and not mps_available():
        raise RuntimeError("device 'mps' asked for, but this PyTorch has no Apple GPU; use device='cpu'")
    if kind == "mps" and distributed:
        raise RuntimeError("several processes cannot train on 'mps' (gloo reduces CPU tensors only); use device='cpu'")
    return requested


def device_name(device: str) -> str:
    """What `device` is, in words: the GPU's model, or the CPU's cores and the threads PyTorch uses."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    if kind == "mps":
        return "Apple GPU (MPS)"
    return f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


# --- the number format --------------------------------------------------------------------------

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def bf16_native(device: torch.device | str) -> bool:
    """Whether `device` computes bfloat16 matmuls in hardware (CUDA Ampere and later; CPUs with AVX512-BF16 or AMX)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if kind == "cpu":
        native = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
        return torch.backends.mkldnn.is_available() and any(check() for check in native if check is not None)
    return False


def choose_precision(device: str, requested: str = "auto") -> str:
    """"auto": bf16 where the hardware computes it natively, fp16 on older GPUs, fp32 elsewhere."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision={requested!r}; choose one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    if bf16_native(device):
        return "bf16"
    return "fp16" if torch.device(device).type == "cuda" else "fp32"


def autocast(device: str, precision: str = "auto") -> contextlib.AbstractContextManager:
    """The forward pass's context: matmuls in bf16 or fp16 under autocast, or plain fp32 ("auto": see above)."""
    precision = choose_precision(device, precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[precision])


def grad_scaler(device: str, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 only; for bf16 and fp32 a disabled scaler passes everything through."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")


def allow_tf32(device: str) -> None:
    """Let float32 matmuls and convolutions on Ampere+ GPUs use TF32 (10-bit mantissa, 8x the speed)."""
    if torch.device(device).type != "cuda":
        return
    matmul, conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision"):  # PyTorch >= 2.9
        matmul.fp32_precision = "tf32"
        if conv is not None and hasattr(conv, "fp32_precision"):
            conv.fp32_precision = "tf32"
    else:
        matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# --- peak FLOP/s, for MFU -----------------------------------------------------------------------

# Dense (not sparse) peaks from the vendors' data sheets, in FLOP/s: 16-bit matmuls on the tensor cores
# (bf16, or fp16 on GPUs without bf16), and float32 matmuls as training runs them (TF32 tensor cores
# from Ampere on, since `allow_tf32`; the plain float32 units before). Checked in order, so the more
# specific names come first ("H100 PCIe" before "H100", "L40S" before "L40" before "L4").
KNOWN_PEAKS = (
    # name        16-bit    float32
    ("B200", 2250e12, 1125e12),
    ("H200 NVL", 835e12, 418e12),
    ("H200", 989e12, 495e12),
    ("H100 NVL", 835e12, 418e12),
    ("H100 PCIe", 756e12, 378e12),
    ("H100", 989e12, 495e12),
    ("A100", 312e12, 156e12),
    ("L40S", 362e12, 183e12),
    ("L40", 181e12, 90.5e12),
    ("L4", 121e12, 60e12),
    ("A10G", 70e12, 35e12),
    ("RTX 4090", 165e12, 82.6e12),
    ("RTX 3090", 71e12, 35.6e12),
    ("V100", 125e12, 15.7e12),
    ("T4", 65e12, 8.1e12),
)


def format_flops(flops: float) -> str:
    """FLOP/s with three significant digits: '48.7 GFLOP/s', '1.96 TFLOP/s', '989 TFLOP/s'."""
    if not math.isfinite(flops) or flops <= 0:
        return "n/a"
    value, unit = (flops / 1e12, "TFLOP/s") if flops >= 1e12 else (flops / 1e9, "GFLOP/s")
    digits = max(0, 2 - math.floor(math.log10(value))) if value >= 1 else 3
    return f"{value:,.{digits}f} {unit}"


@dataclass(frozen=True)
class Peak:
    """What the hardware could do in FLOP/s, where that number comes from, and what it was before a raise."""

    flops: float
    source: str  # "NVIDIA H100 80GB HBM3 data sheet, bf16 dense" or "measured here: ..."
    raised_from: float | None = None  # the measured peak, when training ran faster than it

    def at_least(self, achieved: float) -> Peak:
        """This peak, or `achieved` FLOP/s (per device) when training went faster, so that MFU stays <= 100%."""
        if not achieved > self.flops:
            return self
        return Peak(achieved, self.source, self.raised_from or self.flops)

    def __str__(self) -> str:
        raised = f"; raised from {format_flops(self.raised_from)}: training ran faster" if self.raised_from else ""
        return f"{format_flops(self.flops)} ({self.source}{raised})"


def peak_flops(device: str, precision: str) -> Peak:
    """The peak for `precision` on `device`: a known GPU's data sheet, else measured here (`measure_peak`)."""
    precision = choose_precision(device, precision)
    if torch.device(device).type == "cuda":
        name = torch.cuda.get_device_name(torch.device(device))
        for known, half, single in KNOWN_PEAKS:
            if known in name:
                fp32 = "float32 as TF32" if torch.cuda.get_device_capability(torch.device(device))[0] >= 8 else "float32"
                what = fp32 if precision == "fp32" else precision
                return Peak(single if precision == "fp32" else half, f"{name} data sheet, {what} dense")
    return measure_peak(device, DTYPES[precision])


def measure_matmul_flops(device: str, dtype: torch.dtype = torch.float32, size: int = 1024, seconds: float = 0.1,
                         repeats: int = 3) -> float:
    """The FLOP/s of `size` x `size` matmuls in `dtype` on `device`: the best of `repeats` timings of at
    least `seconds` (and two matmuls) each. The best, not the mean: other work can only slow a matmul down."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)

    def sync():
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        elif torch.device(device).type == "mps":
            torch.mps.synchronize()

    a @ b  # warm up (kernel selection, caches)
    sync()
    best = 0.0
    for _ in range(repeats):
        runs, started = 0, time.perf_counter()
        while runs < 2 or time.perf_counter() - started < seconds:
            a @ b
            runs += 1
            if runs % 4 == 0:
                sync()
        sync()
        best = max(best, 2 * size**3 * runs / (time.perf_counter() - started))
    return best


@functools.lru_cache(maxsize=None)
def measure_peak(device: str, dtype: torch.dtype = torch.float32, sizes: tuple[int, ...] = (1024, 2048, 4096),
                 repeats: int = 3, max_seconds: float = 0.25) -> Peak:
    """The best matmul speed in `dtype` over `sizes` (and `repeats` timings of each): a practical peak.

    Small matmuls do not keep every unit busy, so the speed grows with the size until it levels off
    (notebook 05 plots it). A size is skipped where one matmul would take more than `max_seconds` at
    the best speed so far (large float32 matmuls on a slow CPU) or would not fit in a quarter of the
    GPU's free memory. Measured once per process, and cached.
    """
    best, best_size, tried = 0.0, 0, []
    for size in sizes:
        if best and 2 * size**3 / best > max_seconds:
            break
        if torch.device(device).type == "cuda" and 3 * size**2 * dtype.itemsize > torch.cuda.mem_get_info(device)[0] / 4:
            break
        flops = measure_matmul_flops(device, dtype, size, repeats=repeats)
        tried.append(size)
        if flops > best:
            best, best_size = flops, size
    return Peak(best, f"measured here: {dtype_name(dtype)} matmuls of size {', '.join(map(str, tried))}, "
                      f"best of {repeats} timings each, fastest at {best_size}")
