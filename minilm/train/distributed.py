"""Where training runs: the device, the number format, and several processes working as one.

**Processes.** `torchrun --nproc_per_node=N -m minilm pretrain` starts N copies of the program and
tells each who it is through environment variables: RANK (0..N-1 over all machines), LOCAL_RANK (its
GPU on this machine), WORLD_SIZE (N) and MASTER_ADDR / MASTER_PORT (where they meet). Each process
holds a full copy of the model and trains on its own part of the data; DistributedDataParallel
averages the gradients across processes during the backward pass, so every copy takes the same
optimizer step and the copies stay identical. Processes talk through NCCL on GPUs and gloo on CPUs.
Only rank 0 writes logs and checkpoints, and every process waits at a barrier before leaving, so
that none shuts the group down while another still needs it.

**Numbers.** Weights and optimizer state stay in float32. Under autocast the matmuls run in
bfloat16, which has float32's exponent range (no overflow, so no loss scaling) and half its bytes:
tensor cores on Ampere and later GPUs, AMX on recent Xeons. Where bfloat16 is missing (older GPUs),
float16 needs a `GradScaler`: it multiplies the loss so that small gradients do not underflow to
zero, and unscales them before the step. On CUDA, float32 matmuls outside autocast may use TF32.

**MFU** compares the FLOPs a step does with what the hardware could do: a table of published peaks
for common GPUs, or else a measured matmul peak.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import time
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

from minilm.model.gpt import bf16_native

TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
LAUNCH = "launch with `torchrun --nproc_per_node=N -m minilm pretrain` (or unset them to train in one process)"


@dataclass(frozen=True)
class World:
    """This process's place among the processes that train together (one process: rank 0 of 1)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: str = "cpu"
    backend: str | None = None  # "nccl" or "gloo" when distributed

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, samples and writes checkpoints."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return any(name in os.environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def read_launch_environment() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's variables, with a clear error for a broken launch."""
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        found = [name for name in TORCHRUN_VARIABLES if name in os.environ]
        raise RuntimeError(f"incomplete distributed launch: {', '.join(found)} set but {', '.join(missing)} missing; {LAUNCH}")
    values = {}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        try:
            values[name] = int(os.environ[name])
        except ValueError:
            raise RuntimeError(f"{name}={os.environ[name]!r} is not an integer; {LAUNCH}") from None
    rank, local_rank, world_size = values["RANK"], values["LOCAL_RANK"], values["WORLD_SIZE"]
    if world_size < 1 or not 0 <= rank < world_size or not 0 <= local_rank <= rank:
        raise RuntimeError(f"inconsistent launch: RANK={rank}, LOCAL_RANK={local_rank}, WORLD_SIZE={world_size}; {LAUNCH}")
    return rank, local_rank, world_size


def choose_device(requested: str | None = None, local_rank: int = 0) -> str:
    """`requested` if given (checked), else this process's GPU, else the CPU. (Apple's MPS: ask for it by name.)"""
    if requested is None:
        requested = "cuda" if torch.cuda.is_available() else "cpu"
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
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("device 'mps' asked for, but this PyTorch has no Apple GPU; use device='cpu'")
    return requested


def start(device: str | None = None, timeout_s: float = 1800.0) -> World:
    """Join the process group when launched by torchrun; otherwise a world of one process.

    `timeout_s` bounds how long a process waits for the others, at the start and at every collective
    (30 minutes: long enough for rank 0 to build the earlier stages while the others wait).
    """
    if not launched_by_torchrun():
        return World(device=choose_device(device))
    rank, local_rank, world_size = read_launch_environment()
    device = choose_device(device, local_rank)
    on_gpu = torch.device(device).type == "cuda"
    if on_gpu:
        torch.cuda.set_device(device)
    backend = "nccl" if on_gpu else "gloo"
    if world_size > 1 and not dist.is_initialized():
        try:
            dist.init_process_group(
                backend, rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=timeout_s),
                device_id=torch.device(device) if on_gpu else None,
            )
        except Exception as error:  # a missing peer, a port in use, an unreachable address
            raise RuntimeError(
                f"rank {rank} of {world_size} could not join the process group at "
                f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({type(error).__name__}: {error}); {LAUNCH}"
            ) from error
    return World(rank, local_rank, world_size, device, backend if world_size > 1 else None)


def stop(world: World) -> None:
    """Leave the process group cleanly: wait for every process, then destroy the group.

    Without the barrier a fast process can tear the group down while a slow one still sends to it,
    and the slow one aborts at exit.
    """
    if world.distributed and dist.is_initialized():
        barrier(world)
        dist.destroy_process_group()


@contextlib.contextmanager
def processes(device: str | None = None, timeout_s: float = 1800.0) -> Iterator[World]:
    """`with processes() as world:` start (or join) the world, and always leave it.

    After an error the barrier is skipped: the other processes may be gone, and waiting for them
    would only turn the error into a timeout.
    """
    world = start(device, timeout_s)
    try:
        yield world
    except BaseException:
        if world.distributed and dist.is_initialized():
            dist.destroy_process_group()
        raise
    stop(world)


def barrier(world: World) -> None:
    if world.distributed and dist.is_initialized():
        if world.backend == "nccl":
            dist.barrier(device_ids=[torch.device(world.device).index])
        else:
            dist.barrier()


def all_reduce_sum(values: list[float], world: World) -> list[float]:
    """The sum over processes of each number in `values` (the values themselves in a world of one)."""
    if not world.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=world.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def broadcast_int(value: int, world: World) -> int:
    """Rank 0's `value`, on every process."""
    if not world.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=world.device)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


# --- number formats -----------------------------------------------------------------------------

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def choose_precision(device: str, requested: str = "auto") -> str:
    """"auto": bf16 where the hardware computes it natively, fp16 on older GPUs, fp32 elsewhere."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision={requested!r}; choose one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    if bf16_native(device):
        return "bf16"
    return "fp16" if torch.device(device).type == "cuda" else "fp32"


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager:
    """The forward pass's context: matmuls in bf16 or fp16 under autocast, or plain fp32."""
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


# --- peak FLOP/s, for MFU -----------------------------------------------------------------------

# Dense (not sparse) bf16/fp16 tensor-core peaks from the vendors' data sheets, in FLOP/s.
# Checked in order, so the more specific names come first.
KNOWN_PEAKS = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("A10G", 70e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
)


def peak_flops(device: str, precision: str) -> tuple[float, str]:
    """(FLOP/s, where the number comes from): the data sheet for a known GPU in bf16/fp16, else measured."""
    if torch.device(device).type == "cuda" and precision in ("bf16", "fp16"):
        name = torch.cuda.get_device_name(torch.device(device))
        for known, flops in KNOWN_PEAKS:
            if known in name:
                return flops, f"{name} data sheet"
    dtype = DTYPES["fp32" if precision == "auto" else precision]
    return measure_matmul_flops(device, dtype), f"measured {dtype_name(dtype)} matmul"


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@functools.lru_cache(maxsize=None)
def measure_matmul_flops(device: str, dtype: torch.dtype = torch.float32, size: int = 1024, seconds: float = 0.3) -> float:
    """The FLOP/s of square matmuls of `size` in `dtype` on `device`: a practical peak for MFU."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)

    def sync():
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)

    a @ b  # warm up (kernel selection, caches)
    sync()
    runs, started = 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - started < seconds:
        a @ b
        runs += 1
        if runs % 4 == 0:
            sync()
    sync()
    return 2 * size**3 * runs / (time.perf_counter() - started)
