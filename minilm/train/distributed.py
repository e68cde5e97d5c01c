"""Several processes training as one: torchrun's launch, the process group, and what they exchange.

`torchrun --nproc_per_node=N -m minilm pretrain` starts N copies of the program and
tells each who it is through environment variables: RANK (0..N-1 over all machines), LOCAL_RANK (its
GPU on this machine), WORLD_SIZE (N) and MASTER_ADDR / MASTER_PORT (where they meet). Each process
holds a full copy of the model and trains on its own part of the data; DistributedDataParallel
averages the gradients across processes during the backward pass, so every copy takes the same
optimizer step and the copies stay identical. Processes talk through NCCL on GPUs and gloo on CPUs.
Only rank 0 writes logs and checkpoints, and every process waits at a barrier before leaving, so
that none shuts the group down while another still needs it.

Which device each process uses, and in which number format it computes, is `minilm.hardware`'s
policy, the same as for one process.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

from minilm.hardware import pick_device

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


def start(device: str | None = None, timeout_s: float = 1800.0) -> World:
    """Join the process group when launched by torchrun; otherwise a world of one process.

    `timeout_s` bounds how long a process waits for the others, at the start and at every collective
    (30 minutes: long enough for rank 0 to build the earlier stages while the others wait).
    """
    if not launched_by_torchrun():
        return World(device=pick_device(device))
    rank, local_rank, world_size = read_launch_environment()
    device = pick_device(device, local_rank, distributed=world_size > 1)
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
