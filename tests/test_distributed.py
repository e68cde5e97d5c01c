"""Two processes (gloo, on this CPU) train exactly as one process on their two batches put together."""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from minilm import hardware
from minilm.cache import Artifact
from minilm.model.accounting import flops_per_token
from minilm.model.gpt import GPT, make_optimizer
from minilm.train import checkpoint as ckpt
from minilm.train import distributed
from minilm.train.loop import TrainConfig, read_log, step_windows, train_step
from minilm.train.objectives import make_batch
from minilm.train.schedule import learning_rate

sys.path.insert(0, str(Path(__file__).parent))
from test_train import TINY, make_corpus  # noqa: E402

CONFIG = replace(TINY, dropout=0.0, batch_size=2, grad_accum=2, max_steps=6, eval_every=3, checkpoint_every=3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world_size: int, port: int, corpus: str, home: str, config: dict, results: str) -> None:
    """One process of the distributed run, as torchrun would start it: the stage, called by every rank."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), MINILM_HOME=home)
    from minilm.train.stage import run_pretrain_stage

    artifact = run_pretrain_stage("ci", config=TrainConfig(**config), tokenizer=Artifact(Path(corpus), {"key": "corpus"}),
                                  progress=False)
    Path(results, f"rank{rank}.json").write_text(json.dumps({"path": str(artifact.path), "key": artifact.key}))


def single_process_reference(folder: Path, config: TrainConfig, world_size: int) -> dict[str, torch.Tensor]:
    """One process, one big batch per step: the windows of every rank, concatenated."""
    from minilm.tokenizer.shards import TokenShards

    shards = TokenShards(folder / "shards", "train")
    model = GPT(config.model_config(shards.vocab_size), seed=config.seed)
    optimizer = make_optimizer(model, config.lr, config.weight_decay, (config.beta1, config.beta2))
    scaler = hardware.grad_scaler("cpu", "fp32")
    for step in range(config.max_steps):
        parts = [step_windows(shards, config, step, rank, world_size) for rank in range(world_size)]
        inputs, targets = make_batch(np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]), "causal")
        lr = learning_rate(step, config.lr, config.warmup_steps, config.max_steps, config.min_lr)
        train_step(model, optimizer, scaler, [(inputs, targets)], lr, config.grad_clip, "cpu")
    return model.state_dict()


def test_two_processes_train_exactly_as_one_on_the_same_global_batch(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    corpus = make_corpus(tmp_path / "corpus")
    home, results = tmp_path / "home", tmp_path / "results"
    results.mkdir()
    mp.spawn(worker, args=(2, free_port(), str(corpus), str(home), asdict(CONFIG), str(results)), nprocs=2, join=True)

    seen = [json.loads((results / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert seen[0] == seen[1]  # every rank returns the artifact rank 0 built
    artifact_path = Path(seen[0]["path"])
    manifest = json.loads((artifact_path / "manifest.json").read_text())
    assert manifest["summary"]["world_size"] == 2 and manifest["summary"]["tokens"] == 6 * 2 * 2 * 32 * 2
    records = read_log(artifact_path / "log.jsonl")
    assert records[0]["world_size"] == 2 and [r["step"] for r in records if r["kind"] == "train"] == [2, 4, 6]
    # MFU is per device: each of the two does half the FLOPs of the tokens per second of both
    flops, peak = flops_per_token(CONFIG.model_config(320))["training"], records[0]["peak_flops"]
    for r in (r for r in records if r["kind"] == "train"):
        peak = max(peak, flops * r["tokens_per_s"] / 2)  # (raised if training went faster than the peak measured)
        assert r["mfu"] == pytest.approx(flops * r["tokens_per_s"] / 2 / peak, rel=1e-9)

    trained = ckpt.read_checkpoint(artifact_path / "checkpoint")[0]
    reference = single_process_reference(corpus, CONFIG, world_size=2)
    for name, tensor in reference.items():
        if name.endswith("attn.c_attn.bias"):
            # The keys' bias adds the same score to every key of a query, which softmax ignores: its true
            # gradient is 0 and what the backward pass finds is rounding noise, which Adam scales up to
            # steps of lr size. Noise summed in another order differs, so this slice gets a looser bound.
            keys = slice(CONFIG.n_embd, 2 * CONFIG.n_embd)
            torch.testing.assert_close(trained[name][keys], tensor[keys], rtol=0, atol=1e-5, msg=name)
            trained[name][keys] = tensor[keys]
        torch.testing.assert_close(trained[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    # not a test that cannot fail: rank 0's batches alone lead elsewhere
    alone = single_process_reference(corpus, CONFIG, world_size=1)
    assert not torch.allclose(alone["transformer.wte.weight"], trained["transformer.wte.weight"], atol=1e-4)

    # One process is another run (half the global batch): the stage trains anew instead of reusing it.
    from minilm.train.stage import run_pretrain_stage

    monkeypatch.setenv("MINILM_HOME", str(home))
    single = run_pretrain_stage("ci", config=CONFIG, tokenizer=Artifact(corpus, {"key": "corpus"}), progress=False)
    assert not single.reused and single.manifest["summary"]["world_size"] == 1
    assert single.manifest["config"]["world_size"] == 1 and manifest["config"]["world_size"] == 2
    again = run_pretrain_stage("ci", config=CONFIG, tokenizer=Artifact(corpus, {"key": "corpus"}), progress=False)
    assert again.reused and again.key == single.key


def test_resuming_with_another_number_of_processes_is_refused(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    from minilm.tokenizer import Tokenizer
    from minilm.tokenizer.shards import TokenShards
    from minilm.train.loop import train

    args = (TokenShards(corpus / "shards", "train"), TokenShards(corpus / "shards", "val"), Tokenizer.load(corpus / "tokenizer"))
    train(CONFIG, *args, tmp_path / "run", progress=False, until_step=3)
    with pytest.raises(ckpt.CheckpointError, match="written by 1 process.*this run has 2.*--nproc_per_node=1"):
        train(CONFIG, *args, tmp_path / "run", progress=False, world=distributed.World(world_size=2, rank=1))


# --- the launch, without launching -------------------------------------------------------------------


def launch(monkeypatch, **variables) -> None:
    """torchrun's variables as given (str values), the others unset."""
    for name in distributed.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, str(value))


def test_the_launch_environment_accepts_every_consistent_launch_and_names_what_is_wrong(monkeypatch):
    where = dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=29500)
    launch(monkeypatch, RANK=0, LOCAL_RANK=0, WORLD_SIZE=1, **where)  # torchrun --nproc_per_node=1: one process
    assert distributed.read_launch_environment() == (0, 0, 1)
    launch(monkeypatch, RANK=3, LOCAL_RANK=1, WORLD_SIZE=4, **where)  # the second GPU of the second machine
    assert distributed.read_launch_environment() == (3, 1, 4)
    for rank, local_rank, world_size in ((0, 0, 0), (2, 0, 2), (-1, 0, 2), (0, 1, 2), (1, -1, 2)):
        launch(monkeypatch, RANK=rank, LOCAL_RANK=local_rank, WORLD_SIZE=world_size, **where)
        with pytest.raises(RuntimeError, match=f"inconsistent launch: RANK={rank}, LOCAL_RANK={local_rank}, "
                                               f"WORLD_SIZE={world_size}; launch with `torchrun"):
            distributed.read_launch_environment()
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):  # any one of torchrun's own variables means a launch
        launch(monkeypatch, **{name: 0})
        assert distributed.launched_by_torchrun()
        with pytest.raises(RuntimeError, match=f"incomplete distributed launch: {name} set but"):
            distributed.start("cpu")
    launch(monkeypatch, MASTER_ADDR="127.0.0.1", MASTER_PORT=29500)  # where to meet is no launch by itself
    assert not distributed.launched_by_torchrun()
    launch(monkeypatch, RANK=0, WORLD_SIZE=2)
    with pytest.raises(RuntimeError, match="incomplete distributed launch: RANK, WORLD_SIZE set but "
                                           "LOCAL_RANK, MASTER_ADDR, MASTER_PORT missing; .*or unset them"):
        distributed.read_launch_environment()


def test_start_joins_the_group_with_this_processs_rank_and_device(monkeypatch):
    """What `start` passes on, seen through stand-ins for the device choice and the process group."""
    picked, joined = [], []

    def pick_device(requested, local_rank=0, distributed=False):
        picked.append((requested, local_rank, distributed))
        return "cpu"

    monkeypatch.setattr(distributed, "pick_device", pick_device)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend, **kwargs: joined.append((backend, kwargs)))
    launch(monkeypatch, RANK=3, LOCAL_RANK=1, WORLD_SIZE=4, MASTER_ADDR="127.0.0.1", MASTER_PORT=29500)
    world = distributed.start(None, timeout_s=60)
    assert picked == [(None, 1, True)]  # the GPU of this process is its local rank
    assert world == distributed.World(rank=3, local_rank=1, world_size=4, device="cpu", backend="gloo")
    [(backend, kwargs)] = joined
    assert backend == "gloo" and kwargs["rank"] == 3 and kwargs["world_size"] == 4 and kwargs["timeout"].total_seconds() == 60
    assert kwargs["device_id"] is None  # only a GPU is bound to the group
    # two processes are distributed too (no MPS for them); the wait for the others is 30 minutes by default
    launch(monkeypatch, RANK=1, LOCAL_RANK=1, WORLD_SIZE=2, MASTER_ADDR="127.0.0.1", MASTER_PORT=29500)
    distributed.start(None)
    assert picked[-1] == (None, 1, True) and joined[-1][1]["timeout"].total_seconds() == 30 * 60
    # on a GPU: NCCL, this process's GPU made current and bound to the group
    monkeypatch.setattr(distributed, "pick_device", lambda requested, local_rank=0, distributed=False: f"cuda:{local_rank}")
    current = []
    monkeypatch.setattr(distributed.torch.cuda, "set_device", current.append)
    world = distributed.start(None, timeout_s=60)
    assert world == distributed.World(rank=1, local_rank=1, world_size=2, device="cuda:1", backend="nccl")
    assert current == ["cuda:1"] and joined[-1][0] == "nccl" and joined[-1][1]["device_id"] == torch.device("cuda:1")
    # without torchrun: a world of one process on the device asked for
    monkeypatch.undo()
    launch(monkeypatch)
    assert distributed.start("meta") == distributed.World(device="meta")


class Sent(Exception):
    """Raised by the stand-in collectives below once they have seen the tensor."""


def test_collectives_send_tensors_on_the_worlds_device(monkeypatch):
    """NCCL reduces GPU tensors only: the numbers go out on the world's device (the meta device here, as a GPU would)."""
    sent = []

    def collective(tensor, *args, **kwargs):
        sent.append((tensor.device.type, tensor.dtype, tuple(tensor.shape)))
        raise Sent

    monkeypatch.setattr(distributed.dist, "all_reduce", collective)
    monkeypatch.setattr(distributed.dist, "broadcast", collective)
    world = distributed.World(rank=1, world_size=2, device="meta", backend="nccl")
    with pytest.raises(Sent):
        distributed.all_reduce_sum([1.0, 2.0, 3.0], world)
    with pytest.raises(Sent):
        distributed.broadcast_int(7, world)
    assert sent == [("meta", torch.float64, (3,)), ("meta", torch.int64, (1,))]
    # a world of one process sends nothing
    assert distributed.all_reduce_sum([1.0, 2.0], distributed.World()) == [1.0, 2.0]
    assert distributed.broadcast_int(7, distributed.World()) == 7


def test_all_reduce_sum_adds_every_processs_numbers_in_float64(monkeypatch):
    """In a world of one the numbers come back as they are (a new list); with more processes, as the sum over
    them, in float64: a count of tokens past 2**24 adds up exactly, as it would not in float32."""
    values = (1.0, 0.5, 3.0)
    alone = distributed.all_reduce_sum(values, distributed.World())
    assert alone == [1.0, 0.5, 3.0] and isinstance(alone, list)
    others = torch.tensor([2.0**24, 0.25, -3.0], dtype=torch.float64)

    def all_reduce(tensor, op=torch.distributed.ReduceOp.SUM, group=None, async_op=False):  # torch's signature
        assert op == torch.distributed.ReduceOp.SUM and tensor.dtype == torch.float64
        tensor += others  # what the other process holds

    monkeypatch.setattr(distributed.dist, "all_reduce", all_reduce)
    total = distributed.all_reduce_sum(values, distributed.World(rank=0, world_size=2, backend="gloo"))
    assert total == [2.0**24 + 1, 0.75, 0.0] and all(type(number) is float for number in total)
