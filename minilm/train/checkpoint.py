"""Checkpoints: everything needed to stop training and continue it as if it had never stopped.

A checkpoint is a folder ``step_000500/`` with three files:

- ``model.safetensors``: the weights. safetensors is a plain header plus raw tensor bytes, so loading
  one runs no code: a downloaded model file cannot take over the machine, as a pickle can.
- ``state.pt``: the rest of the training state: AdamW's two moments per weight, the loss scaler,
  and the random number generators. Saved with `torch.save` but loaded with
  `torch.load(weights_only=True)`, which accepts only tensors and plain containers (dicts, lists,
  numbers, strings) and refuses any other pickled object.
- ``checkpoint.json``: the step, the model and training configs, the number of processes, and the
  sha256 of the two other files. It is written last.

The folder is written under a temporary name and renamed to ``step_NNNNNN`` only when all three
files are on disk, so a process killed half-way through writing leaves a hidden temporary folder
and the previous checkpoint untouched. Older checkpoints are deleted only after the new one is in
place. Loading checks the sha256s, so a truncated or damaged file is reported, not trained on.

Why resuming is exact: the weights and AdamW's moments are saved bit for bit, the learning rate is a
function of the step, and every random draw of a step (which windows, which tokens are masked,
dropout) comes from generators seeded by (seed, step, rank). The global generators of Python,
NumPy and PyTorch are saved and restored as well, for any code of yours that draws from them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import random
import re
import shutil
import time
import uuid
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from minilm.files import atomic_write
from minilm.model.config import GPTConfig
from minilm.model.gpt import GPT

FORMAT, VERSION = "minilm.checkpoint", 1
WEIGHTS, STATE, META = "model.safetensors", "state.pt", "checkpoint.json"
STEP_FOLDER = re.compile(r"step_(\d+)")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: damaged, or made by another config or launch."""


def folder_name(step: int) -> str:
    return f"step_{step:06d}"


# --- random number generators ---------------------------------------------------------------------


def rng_state() -> dict:
    """The global generators of Python, NumPy and PyTorch (CPU and every GPU), as tensors and plain values."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy["kind"], keys, numpy["position"], numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- saving ---------------------------------------------------------------------------------------


def _write(path: Path, data: bytes) -> None:
    """One file of a checkpoint, flushed to disk. (A function of its own so tests can slow it down.)"""
    atomic_write(path, data)


def save_checkpoint(
    folder: str | os.PathLike,
    step: int,
    model: GPT,
    state: dict,
    meta: dict,
    keep: int = 1,
) -> Path:
    """Write ``folder/step_NNNNNN/`` atomically and delete all but the `keep` newest checkpoints.

    `model` is the bare GPT (not a DDP or compiled wrapper); `state` holds the optimizer's state
    dict and anything else (tensors and plain values only); `meta` is JSON-able (configs, world size).
    """
    if keep < 1:
        raise ValueError(f"keep={keep}: a save keeps at least the checkpoint it writes (keep >= 1)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".step_*.tmp-*"):  # left by a process killed while writing
        shutil.rmtree(stale, ignore_errors=True)
    target = folder / folder_name(step)
    building = folder / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    building.mkdir()
    try:
        weights = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
        weights_bytes = save_safetensors(weights, metadata={"format": FORMAT, "step": str(step)})
        buffer = io.BytesIO()
        torch.save({**state, "step": step}, buffer)
        state_bytes = buffer.getvalue()
        _write(building / WEIGHTS, weights_bytes)
        _write(building / STATE, state_bytes)
        meta = {
            **meta,
            "format": FORMAT,
            "version": VERSION,
            "step": step,
            "model": asdict(model.config),
            "sha256": {WEIGHTS: hashlib.sha256(weights_bytes).hexdigest(), STATE: hashlib.sha256(state_bytes).hexdigest()},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        _write(building / META, json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
        if target.exists():  # a checkpoint of the same step (from an earlier attempt): replace it
            old = folder / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
            shutil.rmtree(old, ignore_errors=True)
        os.rename(building, target)
        _sync_folder(folder)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    for old in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _sync_folder(folder: Path) -> None:
    """Flush the folder's entries, so the rename survives a power cut (POSIX; a no-op elsewhere)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- finding and loading --------------------------------------------------------------------------


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """The finished checkpoint folders in `folder`, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := STEP_FOLDER.fullmatch(p.name)) and p.is_dir()]
    return [path for _, path in sorted(found)]


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest finished checkpoint in `folder`, or None."""
    found = list_checkpoints(folder)
    return found[-1] if found else None


def read_meta(path: str | os.PathLike) -> dict:
    """A checkpoint's checkpoint.json, checked for format and version."""
    path = Path(path)
    meta_path = path / META
    if not meta_path.is_file():
        raise CheckpointError(f"{path} is not a checkpoint: {META} is missing (delete the folder, or pass a step_NNNNNN folder)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{meta_path} is damaged ({error}); delete {path} to resume from an earlier checkpoint") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{meta_path} is not a {FORMAT} version {VERSION} checkpoint")
    # what loading needs, which a file edited by hand may lack
    wrong = [repr(key) for key, kind in (("step", int), ("model", dict), ("sha256", dict)) if not isinstance(meta.get(key), kind)]
    if not wrong:
        wrong = [f"sha256 of {name}" for name in (WEIGHTS, STATE) if not isinstance(meta["sha256"].get(name), str)]
    if wrong:
        raise CheckpointError(f"{meta_path} has no valid {', '.join(wrong)} (edited by hand?); "
                              f"delete {path} to resume from an earlier checkpoint")
    return meta


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(weights, state, meta) of a checkpoint, on the CPU, after checking every file's sha256."""
    path = Path(path)
    meta = read_meta(path)
    blobs = {}
    for name in (WEIGHTS, STATE):
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {name} is missing; delete the folder to resume from an earlier one")
        blobs[name] = file.read_bytes()
        if hashlib.sha256(blobs[name]).hexdigest() != meta["sha256"][name]:
            raise CheckpointError(
                f"checkpoint {path} is corrupt: {name} does not match the sha256 recorded in {META} "
                f"(truncated copy or disk error); delete the folder to resume from an earlier checkpoint"
            )
    # The sha256s match, so a file that does not parse was written that way, or edited and its hash re-recorded.
    delete = f"delete {path} to resume from an earlier checkpoint"
    try:
        weights = load_safetensors(blobs[WEIGHTS])
    except SafetensorError as error:
        raise CheckpointError(f"{path / WEIGHTS} is not a readable safetensors file ({error}); {delete}") from None
    try:
        state = torch.load(io.BytesIO(blobs[STATE]), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path / STATE} holds something other than tensors and plain containers; it is not loaded, "
            f"as unpickling it could run arbitrary code ({str(error).splitlines()[0]})"
        ) from None
    except Exception as error:  # what a truncated or damaged zip or pickle raises: RuntimeError, EOFError, ValueError...
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{path / STATE} is not a readable PyTorch file ({reason}); {delete}") from None
    return weights, state, meta


def config_differences(saved: dict, current: dict, ignore: frozenset[str] = frozenset()) -> list[str]:
    """'field: checkpoint X, now Y' for every field that differs (except `ignore`)."""
    return [
        f"{name}: checkpoint {saved.get(name)!r}, now {current.get(name)!r}"
        for name in sorted(set(saved) | set(current))
        if name not in ignore and saved.get(name) != current.get(name)
    ]


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> GPT:
    """The model of a checkpoint, built from the config recorded in it (for generation and later stages).

    `path` is a checkpoint folder or a folder of them (the newest is taken).
    """
    path = Path(path)
    if not (path / META).exists():
        newest = latest_checkpoint(path)
        if newest is None:
            raise CheckpointError(f"no checkpoint in {path}: expected {META} or step_NNNNNN folders")
        path = newest
    weights, _, meta = read_checkpoint(path)
    try:
        config = GPTConfig(**meta["model"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path / META} has a model config this minilm cannot build ({error})") from None
    model = GPT(config)
    model.load_state_dict(weights)
    return model.to(device)
