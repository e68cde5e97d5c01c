"""LoRA: fine-tuning a few small matrices beside the frozen pretrained ones (Hu et al., 2021).

Full fine-tuning changes every weight W of the model. LoRA freezes W and learns a change of low rank,

    W x  ->  W x + (alpha / r) * B A x          A: (r, in), B: (out, r), r much smaller than in and out

so a layer of out x in weights trains only r * (in + out) numbers. A starts random (Kaiming-uniform, as
`nn.Linear` does) and B at zero, so the adapted model starts exactly equal to the pretrained one and
drifts from it only as far as training pushes B. The factor alpha / r keeps the size of the change
roughly the same when r changes, so a learning rate found at one rank works at another.

Three things make LoRA practical beyond the parameter count:
- the optimizer keeps its two moments for the adapters only, so memory is mostly the frozen weights;
- `merge` folds B A into W once training is done: the served model is a plain GPT, as fast as before;
- an adapter file holds only A and B (a few hundred KB), so one base model can carry many of them. The
  file records which base it was trained on, and loading it onto another base is an error, not a
  silently wrong model.

Where to spend the rank: `low_rank_share` measures how much of what full fine-tuning changed in a weight
a change of rank r can hold. For stage 6 the token embedding (which is also the output head: the weights
are tied) changes the most and in few directions, the blocks' weights in many, so the stage adapts the
embedding too (`LoRAEmbedding`, PEFT's LoRA for embeddings) at a larger rank than the blocks, and on the
rows of the tokens that the fine-tuning data contains only, which buys twice the rank for the same weights.

The course's layer names are GPT-2's, so the same target names select the same layers in Hugging Face's
PEFT (`LoraConfig(target_modules=[...])`), against which tests/test_finetune_lora.py checks this module.
This follows PEFT's defaults: the initialisation, the scaling alpha / r, dropout on the adapter's input.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_safetensors
from torch import nn

from minilm.files import atomic_write
from minilm.model.gpt import GPT

# The linear layers of a block, by the names GPT-2 gives them (and PEFT matches): the fused query/key/value
# projection, the attention's output projection, and the MLP's two layers. "lm_head" also exists when the
# head is not tied to the embedding.
BLOCK_LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
ROWS = "transformer.wte.rows"  # in an adapter file: the token ids of the embedding adapter's rows, if not all
FORMAT, VERSION = "minilm.lora", "3"  # 3: the embedding adapter's rows; 2: the embedding adapter; 1: trainable token rows


class AdapterError(ValueError):
    """An adapter file that cannot go onto this model: missing, damaged, or made for another base or shape."""


def _check_rank(rank: int, alpha: float, rows: int, columns: int, what: str) -> None:
    if not isinstance(rank, int) or rank < 1:
        raise ValueError(f"LoRA rank must be a positive integer, got {rank!r}")
    if rank > min(rows, columns):
        raise ValueError(
            f"rank {rank} is larger than the {what} it adapts ({rows} x {columns}): "
            f"a change of that rank is a full matrix; pick rank <= {min(rows, columns)}"
        )
    if alpha <= 0:
        raise ValueError(f"LoRA alpha must be positive, got {alpha!r}")


def _check_rows(rows: torch.Tensor | None, vocab_size: int) -> torch.Tensor | None:
    """`rows` as sorted unique int64 token ids, checked to be in the vocabulary (None stays None: every row)."""
    if rows is None:
        return None
    rows = torch.as_tensor(rows)
    if rows.dim() != 1 or rows.numel() == 0 or rows.is_floating_point() or rows.dtype == torch.bool:
        raise ValueError(f"embedding rows must be a non-empty 1-D tensor of token ids, got shape {tuple(rows.shape)} "
                         f"and dtype {rows.dtype}; pass None to adapt every row")
    rows = torch.unique(rows.long())  # sorted
    if rows[0] < 0 or rows[-1] >= vocab_size:
        raise ValueError(f"embedding rows must be token ids in [0, {vocab_size}), got {int(rows[0])} to {int(rows[-1])}")
    return rows


class LowRankChange(nn.Module):
    """What a LoRA linear layer and a LoRA embedding share: a frozen `base` module, a change `delta()` to
    its weight, and merging that change in (and out) so that serving runs the plain layer."""

    base: nn.Module
    rank: int
    alpha: float
    merged: bool

    def delta(self) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the change into the base weight, so forward is the plain layer again (for serving)."""
        if not self.merged:
            self.base.weight += self.delta().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the change out of the base weight again (equal to before `merge` up to rounding)."""
        if self.merged:
            self.base.weight -= self.delta().to(self.base.weight.dtype)
            self.merged = False

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}, merged={self.merged}"


class LoRALinear(LowRankChange):
    """A frozen `nn.Linear` plus a trainable low-rank change: base(x) + (alpha / rank) * B A dropout(x)."""

    def __init__(
        self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0, generator: torch.Generator | None = None
    ):
        super().__init__()
        _check_rank(rank, alpha, base.out_features, base.in_features, "layer")
        self.base = base.requires_grad_(False)
        self.rank, self.alpha, self.scaling = rank, alpha, alpha / rank
        weight = base.weight
        a = nn.init.kaiming_uniform_(torch.empty(rank, base.in_features), a=math.sqrt(5), generator=generator)
        self.lora_A = nn.Parameter(a.to(weight.device, weight.dtype))  # drawn as nn.Linear draws its weights
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=weight.device, dtype=weight.dtype))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.train(base.training)  # a new module is in training mode; follow the layer it replaces

    def delta(self) -> torch.Tensor:
        """The change to the base weight, (out, in): (alpha / rank) * B A."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:  # B A is already inside base.weight
            return self.base(x)
        # Two thin matmuls (in -> rank -> out) rather than one with the full B A: far fewer operations for a
        # large layer, and only A and B get gradients. (At this course's `cpu` sizes the thin products are
        # bound by memory, not arithmetic: one linear with W + B A measured some 10% faster per step.)
        return self.base(x) + F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B) * self.scaling


class LoRAEmbedding(LowRankChange):
    """A frozen token embedding plus a low-rank change to its rows: W + (alpha / rank) (B A)^T.

    Why adapt the embedding at all: stage 6's measurements show that fine-tuning changes it more than any
    block (the full SFT update to the embedding is larger than the embedding itself), and that this
    change is nearly low rank, where the blocks' changes are not (notebook 06 takes the SVD of each
    update), so a few directions of the embedding buy more than the same parameters spread over the blocks.
    It also gives meaning to the chat format's role and end tokens: reserved in stage 2, never seen in
    pretraining, their rows are still random, and here they move like every other row.

    PEFT's LoRA for `nn.Embedding`, whose layout this follows: A is (rank, vocab) and indexed by token id,
    B is (n_embd, rank); A starts at zero and B normal, the other way round from a linear layer, so the
    model starts equal to the base. Under tied weights the same matrix is the output head's, so `weight`
    serves both, as `GPT.output_weight` reads it; PEFT ties the head's adapter to the embedding's the same
    way (`LoraConfig(ensure_weight_tying=True)`: the head's A is B^T and its B is A^T).

    `rows` (token ids) confines the change to those rows: A has a column for each of them only, and the
    other rows stay the base's. Stage 6 passes the tokens its training conversations contain. A row of a token
    the data never shows gets no gradient through the input, only through the head, where all it learns is
    to be pushed down with the other unseen tokens; its columns of A would cost weights and buy almost
    nothing. With about half the vocabulary seen, the same number of weights buys twice the rank. To PEFT
    this is its LoRA with zeros in A's other columns (`vocabulary_A`).
    """

    def __init__(self, base: nn.Embedding, rank: int, alpha: float, generator: torch.Generator | None = None,
                 rows: torch.Tensor | None = None):
        super().__init__()
        rows = _check_rows(rows, base.num_embeddings)
        _check_rank(rank, alpha, base.num_embeddings if rows is None else len(rows), base.embedding_dim, "embedding")
        self.base = base.requires_grad_(False)
        self.rank, self.alpha, self.scaling = rank, alpha, alpha / rank
        self.register_buffer("rows", rows, persistent=False)  # None: every row; kept out of the state dict
        weight = base.weight
        b = torch.randn(base.embedding_dim, rank, generator=generator)
        columns = base.num_embeddings if rows is None else len(rows)
        self.lora_A = nn.Parameter(torch.zeros(rank, columns, device=weight.device, dtype=weight.dtype))
        self.lora_B = nn.Parameter(b.to(weight.device, weight.dtype))
        self.merged = False
        self.train(base.training)

    def delta(self) -> torch.Tensor:
        """The change to the embedding matrix, (vocab, n_embd): (alpha / rank) (B A)^T, zero in the rows not adapted."""
        return (self.lora_B @ self.vocabulary_A()).T * self.scaling

    def vocabulary_A(self) -> torch.Tensor:
        """A over the whole vocabulary, (rank, vocab): PEFT's layout, zero in the columns of the rows not adapted."""
        if self.rows is None:
            return self.lora_A
        return self.lora_A.new_zeros(self.rank, self.base.num_embeddings).index_copy(1, self.rows, self.lora_A)

    @property
    def weight(self) -> torch.Tensor:
        """The embedding matrix in use (and, tied, the output head's): the base plus the change."""
        return self.base.weight if self.merged else self.base.weight + self.delta()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, self.weight)


# --- adding, counting, merging ------------------------------------------------------------------


def _matches(name: str, target: str) -> bool:
    """PEFT's rule: a target selects the modules whose dotted name is it or ends with '.' + it."""
    return name == target or name.endswith("." + target)


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The LoRA layers of a model, by module name (empty for a plain GPT)."""
    return {name: module for name, module in model.named_modules() if isinstance(module, LoRALinear)}


def add_lora(
    model: GPT,
    rank: int = 8,
    alpha: float = 8.0,
    targets: tuple[str, ...] = BLOCK_LINEARS,
    dropout: float = 0.0,
    seed: int = 0,
    embedding_rank: int = 0,
    embedding_alpha: float | None = None,
    embedding_rows: torch.Tensor | None = None,
) -> GPT:
    """Replace the linear layers named by `targets` with `LoRALinear`s and freeze every other weight.

    Returns `model` itself, changed in place. A target is matched as PEFT matches one: "attn.c_proj" is
    the attention's output projection of every block, "c_proj" would be both projections. The random
    matrices are drawn from `seed`, so the same call gives the same adapters. `embedding_rank` > 0 also
    adapts the token embedding (`LoRAEmbedding`, alpha `embedding_alpha`, default `embedding_rank`), which
    under tied weights is the output head too; PEFT does the same with the target "wte" and
    `rank_pattern={"wte": embedding_rank}`. `embedding_rows` (token ids) confines that change to those rows
    (`LoRAEmbedding`); None adapts every row.
    """
    if lora_layers(model):
        raise ValueError("this model already has LoRA layers; add them once, to the plain pretrained GPT")
    targets = tuple(targets)
    if not targets:
        raise ValueError(f"no targets given; choose among {', '.join(BLOCK_LINEARS)}")
    if any(_matches("lm_head", target) for target in targets) and model.lm_head is None:
        raise ValueError(
            "the output head is tied to the token embedding (config.tie_weights): it is not a linear layer "
            "of its own and cannot carry LoRA; leave 'lm_head' out of the targets"
        )
    linears = {name: module for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    chosen = [name for name in linears if any(_matches(name, target) for target in targets)]
    unused = [target for target in targets if not any(_matches(name, target) for name in linears)]
    if unused:
        raise ValueError(f"no linear layer is named {', '.join(map(repr, unused))}; choose among {', '.join(BLOCK_LINEARS)}")

    model.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        lora = LoRALinear(linears[name], rank, alpha, dropout, generator)
        setattr(parent, child, lora)
    if embedding_rank:
        alpha = embedding_rank if embedding_alpha is None else embedding_alpha
        model.transformer.wte = LoRAEmbedding(model.transformer.wte, embedding_rank, alpha, generator, embedding_rows)
    model.lora_targets = targets  # recorded for `save_adapter`: the adapter file names them
    return model


def trainable_parameters(model: nn.Module) -> int:
    """The number of weights an optimizer would update (those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def merge_lora(model: GPT) -> GPT:
    """A plain GPT whose weights are the base weights plus every adapter's change (for export and serving).

    `model` is left as it was; the copy has nn.Linear layers again, every weight trainable, and a state
    dict that `GPT(config).load_state_dict` accepts.
    """
    merged = copy.deepcopy(model)
    for name, lora in lora_layers(merged).items():
        lora.merge()
        parent_name, _, child = name.rpartition(".")
        setattr(merged.get_submodule(parent_name), child, lora.base)
    if isinstance(embedding := merged.transformer.wte, LoRAEmbedding):
        embedding.merge()
        merged.transformer.wte = embedding.base
    if hasattr(merged, "lora_targets"):
        del merged.lora_targets
    return merged.requires_grad_(True)


# --- adapter files ------------------------------------------------------------------------------


def base_fingerprint(model: GPT, targets: tuple[str, ...], embedding: bool = False) -> str:
    """A hash of the model's config and of the base weights that LoRA never changes.

    The weights of the targeted layers, and the token embedding if it is adapted too (`embedding`), are
    left out: merging adds the change to them, and an adapter must be recognised on its base whether it
    is merged or not. Every other weight (positions, norms, biases) still differs between two
    trainings, so another base model gets another fingerprint. Weights are
    hashed rounded to bfloat16, so the same model loaded in float32 or in bfloat16 has one fingerprint.
    """
    digest = hashlib.sha256(json.dumps(asdict(model.config), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        name = name.replace(".base.", ".")  # a LoRA layer's frozen module has the plain layer's names
        if name.endswith((".lora_A", ".lora_B")):
            continue
        module, _, kind = name.rpartition(".")
        if kind == "weight" and (any(_matches(module, target) for target in targets) or embedding and module == "transformer.wte"):
            continue
        digest.update(name.encode())
        digest.update(_bytes(tensor.detach().to("cpu", torch.bfloat16)))
    return digest.hexdigest()[:16]


def _bytes(tensor: torch.Tensor) -> bytes:
    """A tensor's raw bytes, whatever its dtype (numpy has no bfloat16, so view the bits as bytes first)."""
    return tensor.contiguous().view(torch.uint8).numpy().tobytes()


def _adapter_tensors(model: GPT) -> dict[str, torch.Tensor]:
    tensors = {
        f"{name}.{part}": getattr(lora, part).detach().to("cpu").contiguous()
        for name, lora in lora_layers(model).items()
        for part in ("lora_A", "lora_B")
    }
    if isinstance(embedding := model.transformer.wte, LoRAEmbedding):
        tensors.update({f"transformer.wte.{part}": getattr(embedding, part).detach().to("cpu").contiguous()
                        for part in ("lora_A", "lora_B")})
        if embedding.rows is not None:  # which token each column of A is for
            tensors[ROWS] = embedding.rows.to("cpu").contiguous()
    return tensors


def _tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        digest.update(name.encode())
        digest.update(_bytes(tensor))
    return digest.hexdigest()


def _shape(model: GPT) -> dict:
    """The rank, alpha and targets of a model's LoRA layers (one of each: `add_lora` gives them all the same),
    and the rank and alpha of its embedding adapter (0 and 0.0 without one)."""
    first = next(iter(lora_layers(model).values()))
    embedding = model.transformer.wte
    adapted = isinstance(embedding, LoRAEmbedding)
    return {"rank": first.rank, "alpha": float(first.alpha), "targets": list(model.lora_targets),
            "embedding_rank": embedding.rank if adapted else 0, "embedding_alpha": float(embedding.alpha) if adapted else 0.0}


def save_adapter(model: GPT, path: str | os.PathLike) -> Path:
    """Write only the adapter weights (every A and B, and the embedding adapter's rows) to a safetensors file, atomically.

    The header records the rank, alpha and targets (and the embedding adapter's rank and alpha), the base
    model's fingerprint and config, and a sha256 of the tensors, so `load_adapter` can refuse a file made for another model or damaged on disk.
    """
    if not lora_layers(model):
        raise ValueError("this model has no LoRA layers to save; call add_lora first")
    tensors = _adapter_tensors(model)
    shape = _shape(model)
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "rank": str(shape["rank"]),
        "alpha": repr(float(shape["alpha"])),
        "targets": json.dumps(shape["targets"]),
        "embedding_rank": str(shape["embedding_rank"]),
        "embedding_alpha": repr(shape["embedding_alpha"]),
        "base_fingerprint": base_fingerprint(model, tuple(shape["targets"]), embedding=shape["embedding_rank"] > 0),
        "base_config": json.dumps(asdict(model.config), sort_keys=True),
        "sha256": _tensors_sha256(tensors),
    }
    return atomic_write(path, save_safetensors(tensors, metadata=metadata))


def read_adapter(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of an adapter file, checked for format and damage; AdapterError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise AdapterError(f"no adapter file at {path}; check the path, or write one with save_adapter(model, path)")
    damaged = f"{path} is not a readable minilm LoRA adapter"
    fix = "save the adapter again with save_adapter"
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError) as error:
        raise AdapterError(f"{damaged} ({error}); {fix}") from None
    if metadata.get("format") != FORMAT or metadata.get("version") != VERSION:
        raise AdapterError(f"{damaged}: it has no {FORMAT} version {VERSION} header; {fix}")
    try:
        metadata = {
            **metadata,
            "rank": int(metadata["rank"]),
            "alpha": float(metadata["alpha"]),
            "targets": list(json.loads(metadata["targets"])),
            "embedding_rank": int(metadata["embedding_rank"]),
            "embedding_alpha": float(metadata["embedding_alpha"]),
        }
    except (KeyError, ValueError) as error:
        raise AdapterError(f"{damaged}: its header lacks a valid {error} (edited by hand?); {fix}") from None
    if _tensors_sha256(tensors) != metadata.get("sha256"):
        raise AdapterError(f"{path} is corrupt: its tensors do not match the sha256 in its header; {fix}")
    return tensors, metadata


def load_adapter(model: GPT, path: str | os.PathLike) -> GPT:
    """Put the adapter saved at `path` onto `model` and return it.

    `model` is the base model the adapter was trained on: a plain GPT (LoRA layers of the file's shape
    are added) or one that already has LoRA layers of the same shape (their A and B are replaced). A file
    made for another base model, rank or targets raises AdapterError saying so.
    """
    tensors, meta = read_adapter(path)
    shape = {key: meta[key] for key in ("rank", "alpha", "targets", "embedding_rank", "embedding_alpha")}
    if lora_layers(model) and (have := _shape(model)) != shape:
        raise AdapterError(
            f"the adapter in {path} has the shape {_describe(shape)}, but this model's LoRA layers have "
            f"{_describe(have)}; load it onto the plain base model (load_adapter adds matching layers) or "
            f"add_lora(model, {', '.join(f'{key}={value!r}' for key, value in shape.items())})"
        )
    fingerprint = base_fingerprint(model, tuple(shape["targets"]), embedding=shape["embedding_rank"] > 0)
    if fingerprint != meta.get("base_fingerprint"):
        saved = json.loads(meta.get("base_config", "{}"))
        now = asdict(model.config)
        differences = [f"{k}: adapter's base {saved.get(k)!r}, this model {now.get(k)!r}" for k in sorted(now) if saved.get(k) != now.get(k)]
        detail = "; ".join(differences) if differences else "same config, different weights"
        raise AdapterError(
            f"the adapter in {path} was trained on another base model (base fingerprint "
            f"{meta.get('base_fingerprint')}, this model {fingerprint}: {detail}); load the checkpoint it was "
            f"trained on, or train a new adapter for this model"
        )
    merged = [name for name, module in model.named_modules() if isinstance(module, LowRankChange) and module.merged]
    if merged:
        raise AdapterError(f"the LoRA layers of this model are merged ({merged[0]}, ...); unmerge() them before loading an adapter")
    rows = tensors.get(ROWS)
    if not lora_layers(model):
        add_lora(model, **shape, embedding_rows=rows)
    elif (have_rows := _adapter_tensors(model).get(ROWS)) is not None or rows is not None:
        if have_rows is None or rows is None or not torch.equal(have_rows, rows):
            raise AdapterError(f"the adapter in {path} adapts other rows of the embedding than this model's LoRA "
                               f"embedding does; load it onto the plain base model (load_adapter adds matching layers)")
    expected = {name: tuple(t.shape) for name, t in _adapter_tensors(model).items()}
    given = {name: tuple(t.shape) for name, t in tensors.items()}
    if expected != given:
        raise AdapterError(f"{path} does not hold the adapter tensors its header describes (edited by hand?); save it again")
    with torch.no_grad():
        for name in _adapter_tensors(model):
            if name != ROWS:
                model.get_parameter(name).copy_(tensors[name])
    return model


def _describe(shape: dict) -> str:
    text = f"rank {shape['rank']}, alpha {shape['alpha']} on {list(shape['targets'])}"
    if shape["embedding_rank"]:
        text += f" and the embedding at rank {shape['embedding_rank']}, alpha {shape['embedding_alpha']}"
    return text


# --- how low is the rank of a fine-tuning update? ----------------------------------------------------


def low_rank_share(change: torch.Tensor, rank: int) -> float:
    """The share of a weight change's squared size that the best change of rank `rank` can hold.

    By the Eckart-Young theorem the closest rank-r matrix to `change` keeps its r largest singular values,
    so the share is (s_1^2 + ... + s_r^2) / (s_1^2 + ... + s_n^2): 1 when the change has rank <= r, and
    near r / n for a random matrix. Applied to what full fine-tuning did to each weight
    (`tuned - base`), it says where a LoRA of rank r can follow full fine-tuning and where it cannot.
    """
    if change.dim() != 2:
        raise ValueError(f"a weight change is a matrix; got a tensor of shape {tuple(change.shape)}")
    if not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive integer, got {rank!r}")
    squares = torch.linalg.svdvals(change.detach().double()) ** 2
    total = float(squares.sum())
    return 1.0 if total == 0 else float(squares[:rank].sum()) / total
