"""Tests of LoRA (minilm.finetune.lora): checked against Hugging Face PEFT on the same weights, and for
what makes it usable: it starts equal to the base, trains only the adapters, merges exactly, and its
adapter files refuse to go onto the wrong model."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save as save_safetensors

from minilm.finetune.lora import (
    BLOCK_LINEARS,
    AdapterError,
    LoRAEmbedding,
    LoRALinear,
    add_lora,
    base_fingerprint,
    load_adapter,
    lora_layers,
    merge_lora,
    save_adapter,
    low_rank_share,
    trainable_parameters,
)
from minilm.model import GPT, GPTConfig, make_optimizer
from spread import spread_weights

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 96
CONFIG = GPTConfig(vocab_size=VOCAB, context=32, n_layer=2, n_head=4, n_embd=32)


def base_model(seed: int = 1, config: GPTConfig = CONFIG) -> GPT:
    """A GPT-2-shaped model with larger weights than GPT-2's init, so that logits differ visibly."""
    return spread_weights(GPT(config, seed=seed), 0.2, seed)


def with_random_adapters(model: GPT, seed: int = 0, **lora) -> GPT:
    """`add_lora` on a copy of `model`, then nonzero B (at init B is 0 and the adapters do nothing)."""
    model = add_lora(copy.deepcopy(model), **{**dict(rank=4, alpha=8.0), **lora})
    generator = torch.Generator().manual_seed(seed)
    adapted = [*lora_layers(model).values()] + [model.transformer.wte] * isinstance(model.transformer.wte, LoRAEmbedding)
    with torch.no_grad():
        for layer in adapted:
            layer.lora_A.normal_(0.0, 0.3, generator=generator)
            layer.lora_B.normal_(0.0, 0.3, generator=generator)
    return model


def tokens(seed: int = 0, shape: tuple[int, int] = (3, 32)) -> torch.Tensor:
    return torch.randint(0, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


# --- against PEFT -------------------------------------------------------------------------------


def peft_copy(base: GPT, model: GPT, targets: tuple[str, ...]):
    """PEFT's LoRA on HF GPT-2 with `base`'s weights and `model`'s adapters.

    The course's layer names are GPT-2's, so the targets pass to PEFT unchanged. HF GPT-2 keeps its
    linear layers as Conv1D, whose weight is stored (in, out): `to_hf` transposes those, and PEFT
    (fan_in_fan_out=True) transposes B A when it merges. A (rank, in) and B (out, rank) have the same
    shapes on both sides and are copied as they are. An embedding adapter is PEFT's target "wte" at its
    own rank and alpha (`rank_pattern`, `alpha_pattern`), tied to the head (`ensure_weight_tying`).
    """
    pytest.importorskip("peft", reason="the PEFT comparison needs peft")
    from peft import LoraConfig, get_peft_model

    from minilm.model.hf import to_hf

    layers = lora_layers(model)
    first = next(iter(layers.values()))
    embedding = model.transformer.wte if isinstance(model.transformer.wte, LoRAEmbedding) else None
    tied = dict(target_modules=[*targets, "wte", "lm_head"], rank_pattern={"wte": embedding.rank, "lm_head": embedding.rank},
                alpha_pattern={"wte": embedding.alpha, "lm_head": embedding.alpha}, ensure_weight_tying=True) if embedding else {}
    config = LoraConfig(**{**dict(r=first.rank, lora_alpha=first.alpha, target_modules=list(targets), lora_dropout=0.0,
                                  fan_in_fan_out=True), **tied})
    peft_model = get_peft_model(to_hf(base), config).eval()
    peft_layers = {
        name.removeprefix("base_model.model."): module
        for name, module in peft_model.named_modules()
        if hasattr(module, "lora_A") and "default" in module.lora_A and not name.endswith("lm_head")
    }
    assert sorted(peft_layers) == sorted(layers)  # the same targets select the same layers
    with torch.no_grad():
        for name, layer in layers.items():
            peft_layers[name].lora_A["default"].weight.copy_(layer.lora_A)
            peft_layers[name].lora_B["default"].weight.copy_(layer.lora_B)
        if embedding:  # the head's adapter is a view of these (A^T, B^T), so it follows
            wte = peft_model.get_input_embeddings()
            wte.lora_embedding_A["default"].copy_(embedding.vocabulary_A())  # zero in the rows not adapted
            wte.lora_embedding_B["default"].copy_(embedding.lora_B)
    return peft_model


@pytest.mark.parametrize("targets", [BLOCK_LINEARS, ("attn.c_attn",), ("c_proj",), ("mlp.c_fc", "attn.c_proj")])
def test_logits_and_gradients_equal_peft(targets):
    base = base_model()
    model = with_random_adapters(base, targets=targets)
    peft_model = peft_copy(base, model, targets)
    x, y = tokens(1), tokens(2)

    ours, loss = model(x, y)
    theirs = peft_model(x).logits
    assert (ours - theirs).abs().max() <= 1e-5
    assert (ours - base(x)[0]).abs().max() > 0.1  # the adapters do change the output

    loss.backward()
    F.cross_entropy(theirs.view(-1, VOCAB), y.view(-1)).backward()
    peft_parameters = dict(peft_model.named_parameters())
    for name, layer in lora_layers(model).items():
        for part in ("lora_A", "lora_B"):
            expected = peft_parameters[f"base_model.model.{name}.{part}.default.weight"].grad
            assert (getattr(layer, part).grad - expected).abs().max() <= 1e-5, f"{name}.{part}"


def test_merged_weights_equal_peft_merge_and_unload():
    from minilm.model.hf import state_dict_from_hf

    base = base_model()
    model = with_random_adapters(base, targets=BLOCK_LINEARS)
    merged = merge_lora(model).state_dict()
    theirs = state_dict_from_hf(peft_copy(base, model, BLOCK_LINEARS).merge_and_unload().state_dict())
    assert merged.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert (merged[name] - tensor).abs().max() <= 1e-6, name


def test_initialisation_is_peft_default():
    """B is zero, so the model starts as the base; A is Kaiming-uniform with a=sqrt(5), as nn.Linear's weights:
    uniform on +-1/sqrt(in). PEFT draws from the global generator; here a seed fixes it instead."""
    base = base_model()
    model = add_lora(copy.deepcopy(base), rank=4, alpha=8.0)
    x = tokens()
    assert torch.equal(model(x)[0], base(x)[0])
    for layer in lora_layers(model).values():
        bound = 1 / layer.base.in_features**0.5
        assert torch.all(layer.lora_B == 0)
        assert layer.lora_A.abs().max() <= bound
        assert layer.lora_A.std().item() == pytest.approx(bound / 3**0.5, rel=0.25)  # the std of U(-b, b)
        assert layer.scaling == 2.0
    again = add_lora(copy.deepcopy(base), rank=4, alpha=8.0)
    assert all(torch.equal(a.lora_A, b.lora_A) for a, b in zip(lora_layers(model).values(), lora_layers(again).values()))


# --- the layer ----------------------------------------------------------------------------------


# Merged (one matmul with W + B A) and factored (W x + B A x) sums round differently in float32: on some CPUs the
# logits (of size about 3) differ by 1e-5. A merge applied twice, or not undone, moves them by the adapters' whole
# effect (about 6 here; the first test checks that it is over 100 times the tolerance).
ROUNDING = 1e-4


def test_merge_and_unmerge_round_trip():
    base = base_model()
    model = with_random_adapters(base)
    x = tokens()
    before = model(x)[0]
    assert (before - base(x)[0]).abs().max() > 100 * ROUNDING  # the adapters change the logits
    weights = {name: layer.base.weight.clone() for name, layer in lora_layers(model).items()}
    for layer in lora_layers(model).values():
        layer.merge()
        layer.merge()  # a second merge does nothing
    assert (model(x)[0] - before).abs().max() <= ROUNDING  # forward does not add the adapters a second time
    for name, layer in lora_layers(model).items():
        assert not torch.equal(layer.base.weight, weights[name])
        layer.unmerge()
        layer.unmerge()
        assert (layer.base.weight - weights[name]).abs().max() <= 1e-6
    assert (model(x)[0] - before).abs().max() <= ROUNDING


def test_merge_lora_gives_a_plain_gpt_and_leaves_the_model():
    model = with_random_adapters(base_model())
    x = tokens()
    merged = merge_lora(model)
    assert not lora_layers(merged) and lora_layers(model)
    assert not any(layer.merged for layer in lora_layers(model).values())
    plain = GPT(CONFIG)
    plain.load_state_dict(merged.state_dict())  # strict: the keys and shapes of a GPT
    assert (plain.eval()(x)[0] - model(x)[0]).abs().max() <= ROUNDING
    assert trainable_parameters(merged) == sum(p.numel() for p in plain.parameters())


def test_dropout_is_on_the_adapter_input_in_training_only():
    model = with_random_adapters(base_model(), dropout=0.5)
    x = tokens()
    assert torch.equal(model(x)[0], model(x)[0])  # eval: no dropout
    model.train()
    torch.manual_seed(0)
    first = model(x)[0]
    assert not torch.equal(first, model(x)[0])
    layer = next(iter(lora_layers(model).values()))
    layer.lora_B.data.zero_()  # with no adapter, dropout on its input changes nothing
    inputs = torch.randn(4, layer.base.in_features)
    assert torch.equal(layer(inputs), layer.base(inputs))


def test_only_the_adapters_train():
    base = base_model()
    model = with_random_adapters(base)
    rank, width, blocks = 4, CONFIG.n_embd, CONFIG.n_layer
    shapes = [(width, 3 * width), (width, width), (width, 4 * width), (4 * width, width)]  # (in, out) per block
    assert trainable_parameters(model) == blocks * sum(rank * (i + o) for i, o in shapes)
    frozen = {name: p.clone() for name, p in model.named_parameters() if not name.endswith(("lora_A", "lora_B"))}
    adapters = {name: p.clone() for name, p in model.named_parameters() if name.endswith(("lora_A", "lora_B"))}

    # All parameters given to AdamW, with weight decay: the frozen ones get no gradient and are skipped.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    _, loss = model.train()(tokens(1), tokens(2))
    loss.backward()
    for name, param in model.named_parameters():
        assert (param.grad is not None) == (name in adapters), name
    optimizer.step()
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name
        else:
            assert not torch.equal(param, adapters[name]), name
    # The course's optimizer takes only what trains: the adapters (all matrices, so all with weight decay).
    groups = make_optimizer(model, lr=1e-3).param_groups
    assert sum(p.numel() for group in groups for p in group["params"]) == trainable_parameters(model)


def test_add_lora_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="no linear layer is named 'attn.q_proj'.*attn.c_attn"):
        add_lora(base_model(), targets=("attn.q_proj",))
    with pytest.raises(ValueError, match="tied to the token embedding"):
        add_lora(base_model(), targets=("lm_head",))
    with pytest.raises(ValueError, match="rank 64 is larger than the layer"):
        add_lora(base_model(), rank=64)
    with pytest.raises(ValueError, match="already has LoRA layers"):
        add_lora(add_lora(base_model()))
    untied = add_lora(base_model(config=CONFIG.replace(tie_weights=False)), targets=("lm_head",))
    assert list(lora_layers(untied)) == ["lm_head"]
    assert isinstance(untied.lm_head, LoRALinear)


# --- adapter files ------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    base = base_model()
    model = with_random_adapters(base, targets=("attn.c_attn", "mlp.c_fc"), rank=2, alpha=6.0)
    path = save_adapter(model, tmp_path / "adapter.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["adapter.safetensors"]  # no temporary file left behind
    with safe_open(path, framework="pt") as f:  # only A and B are in the file
        assert sorted(f.keys()) == sorted(f"{name}.{part}" for name in lora_layers(model) for part in ("lora_A", "lora_B"))
        meta = f.metadata()
    assert (meta["rank"], float(meta["alpha"]), json.loads(meta["targets"])) == ("2", 6.0, ["attn.c_attn", "mlp.c_fc"])
    assert meta["base_fingerprint"] == base_fingerprint(base, ("attn.c_attn", "mlp.c_fc"))

    x = tokens()
    onto_plain = load_adapter(copy.deepcopy(base), path)  # LoRA layers of the file's shape are added
    assert torch.equal(onto_plain(x)[0], model(x)[0])
    onto_lora = load_adapter(add_lora(copy.deepcopy(base), rank=2, alpha=6.0, targets=("attn.c_attn", "mlp.c_fc")), path)
    assert torch.equal(onto_lora(x)[0], model(x)[0])


def test_the_fingerprint_ignores_merging_and_precision():
    base = base_model()
    model = with_random_adapters(base)
    fingerprint = base_fingerprint(base, BLOCK_LINEARS)
    assert base_fingerprint(model, BLOCK_LINEARS) == fingerprint
    assert base_fingerprint(merge_lora(model), BLOCK_LINEARS) == fingerprint
    assert base_fingerprint(copy.deepcopy(base).to(torch.bfloat16), BLOCK_LINEARS) == fingerprint
    assert base_fingerprint(base_model(seed=2), BLOCK_LINEARS) != fingerprint


def test_loading_onto_the_wrong_model_fails_clearly(tmp_path):
    base = base_model()
    path = save_adapter(with_random_adapters(base), tmp_path / "adapter.safetensors")
    assert issubclass(AdapterError, ValueError)
    with pytest.raises(AdapterError, match="another base model.*same config, different weights.*checkpoint it was trained on"):
        load_adapter(base_model(seed=2), path)
    with pytest.raises(AdapterError, match="another base model.*n_embd: adapter's base 32, this model 64"):
        load_adapter(base_model(config=CONFIG.replace(n_embd=64)), path)
    with pytest.raises(AdapterError, match=r"rank 4, alpha 8.0 on .*this model's LoRA layers have rank 8.*add_lora\(model, rank=4"):
        load_adapter(add_lora(copy.deepcopy(base), rank=8, alpha=8.0), path)
    with pytest.raises(AdapterError, match=r"on \['attn.c_attn'\]"):
        load_adapter(add_lora(copy.deepcopy(base), rank=4, alpha=8.0, targets=("attn.c_attn",)), path)
    merged = add_lora(copy.deepcopy(base), rank=4, alpha=8.0)
    next(iter(lora_layers(merged).values())).merge()
    with pytest.raises(AdapterError, match=r"merged.*unmerge\(\)"):
        load_adapter(merged, path)
    with pytest.raises(ValueError, match="no LoRA layers to save"):
        save_adapter(base, tmp_path / "plain.safetensors")


def test_missing_or_damaged_files_fail_clearly(tmp_path):
    base = base_model()
    path = save_adapter(with_random_adapters(base), tmp_path / "adapter.safetensors")
    data = path.read_bytes()

    with pytest.raises(AdapterError, match="no adapter file at .*save_adapter"):
        load_adapter(base, tmp_path / "missing.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(AdapterError, match="not a readable minilm LoRA adapter"):
        load_adapter(copy.deepcopy(base), truncated)
    flipped = tmp_path / "flipped.safetensors"
    flipped.write_bytes(data[:-10] + bytes(b ^ 0xFF for b in data[-10:]))  # a damaged tensor, header intact
    with pytest.raises(AdapterError, match="corrupt: its tensors do not match the sha256"):
        load_adapter(copy.deepcopy(base), flipped)
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(save_safetensors({"x": torch.zeros(2)}))  # a safetensors file, but not an adapter
    with pytest.raises(AdapterError, match="has no minilm.lora version 3 header"):
        load_adapter(copy.deepcopy(base), foreign)
    pickled = tmp_path / "pickled.safetensors"
    torch.save({"x": torch.zeros(2)}, pickled)
    with pytest.raises(AdapterError, match="not a readable"):
        load_adapter(copy.deepcopy(base), pickled)


# --- the embedding adapter (tied to the head) ------------------------------------------------------


def test_embedding_adapter_equals_peft_tied_to_the_head():
    """PEFT adapts GPT-2's tied embedding with the targets "wte" and "lm_head" and ensure_weight_tying: the
    head's adapter is a view of the embedding's (its A is B^T, its B is A^T). Same logits; and the course's
    gradient, of one tied matrix, is the sum of the two that PEFT keeps apart (its head adapter is a
    Parameter of its own that shares storage)."""
    base = base_model()
    model = with_random_adapters(base, targets=BLOCK_LINEARS, embedding_rank=3, embedding_alpha=5.0)
    peft_model = peft_copy(base, model, BLOCK_LINEARS)
    x, y = tokens(1), tokens(2)
    ours, loss = model(x, y)
    theirs = peft_model(x).logits
    assert (ours - theirs).abs().max() <= 1e-5
    without = with_random_adapters(base, targets=BLOCK_LINEARS)  # the same block adapters, embedding frozen
    assert (ours - without(x)[0]).abs().max() > 0.1

    loss.backward()
    F.cross_entropy(theirs.view(-1, VOCAB), y.view(-1)).backward()
    embedding, head = peft_model.get_input_embeddings(), peft_model.base_model.model.lm_head
    expected_a = embedding.lora_embedding_A["default"].grad + head.lora_B["default"].weight.grad.T
    expected_b = embedding.lora_embedding_B["default"].grad + head.lora_A["default"].weight.grad.T
    assert (model.transformer.wte.lora_A.grad - expected_a).abs().max() <= 1e-5
    assert (model.transformer.wte.lora_B.grad - expected_b).abs().max() <= 1e-5


def test_embedding_merge_adds_the_change_once():
    """Merged, the tied matrix is the base plus PEFT's embedding delta, once. (PEFT's own merge_and_unload
    adds it twice on a tied GPT-2, once through the embedding and once through the head, which share the
    weight: the pitfall its ensure_weight_tying warning is about.)"""
    base = base_model()
    model = with_random_adapters(base, targets=BLOCK_LINEARS, embedding_rank=3, embedding_alpha=5.0)
    delta = peft_copy(base, model, BLOCK_LINEARS).get_input_embeddings().get_delta_weight("default")
    merged = merge_lora(model)
    assert isinstance(merged.transformer.wte, torch.nn.Embedding)
    assert (merged.transformer.wte.weight - (base.transformer.wte.weight + delta)).abs().max() <= 1e-6
    with torch.no_grad():
        logits = model(tokens())[0]
        assert (merged(tokens())[0] - logits).abs().max() <= 1e-5 * logits.abs().max()  # float32 rounding of W + delta


def test_embedding_adapter_starts_at_the_base_trains_its_rows_and_round_trips(tmp_path):
    base = base_model()
    model = add_lora(copy.deepcopy(base), rank=2, alpha=4.0, embedding_rank=3)
    embedding = model.transformer.wte
    assert isinstance(embedding, LoRAEmbedding) and embedding.scaling == 1.0  # alpha defaults to the rank
    assert torch.all(embedding.lora_A == 0) and embedding.lora_B.abs().max() > 0  # PEFT's init: A zero, B normal
    with torch.no_grad():
        assert torch.equal(model(tokens())[0], base(tokens())[0])
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    assert {"transformer.wte.lora_A", "transformer.wte.lora_B"} <= trained and "transformer.wte.base.weight" not in trained
    assert trainable_parameters(model) == 3 * (VOCAB + CONFIG.n_embd) + sum(
        p.numel() for n, p in model.named_parameters() if "lora_" in n and not n.startswith("transformer.wte"))
    with torch.no_grad():
        embedding.lora_A.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(3))
        edited = copy.deepcopy(base)  # the same model, made by editing the plain embedding (and so the tied head)
        edited.transformer.wte.weight += embedding.delta()
        assert (model(tokens())[0] - edited(tokens())[0]).abs().max() <= 1e-5
    save_adapter(model, tmp_path / "adapter.safetensors")
    loaded = load_adapter(copy.deepcopy(base), tmp_path / "adapter.safetensors")
    with torch.no_grad():
        assert torch.equal(loaded(tokens())[0], model(tokens())[0])
    with pytest.raises(AdapterError, match=r"embedding at rank 3, alpha 3.0.*add_lora\(model, rank=2, alpha=4.0, "
                                           r"targets=.*embedding_rank=3, embedding_alpha=3.0\)"):
        load_adapter(add_lora(copy.deepcopy(base), rank=2, alpha=4.0), tmp_path / "adapter.safetensors")
    embedding.merge()  # a merged embedding adapter would take the new A and B on top of the old change
    with pytest.raises(AdapterError, match=r"merged \(transformer.wte, ...\); unmerge\(\) them"):
        load_adapter(model, tmp_path / "adapter.safetensors")
    embedding.unmerge()
    other = base_model(seed=2)  # another base: its embedding is not hashed, its other weights still tell
    with pytest.raises(AdapterError, match="trained on another base model"):
        load_adapter(other, tmp_path / "adapter.safetensors")
    with pytest.raises(ValueError, match="rank 33 is larger than the embedding it adapts"):
        add_lora(copy.deepcopy(base), embedding_rank=33)


ROWS = torch.tensor([0, 3, 4, 9, 17, 40, 41, 42, 77, 95])  # the tokens a fine-tuning set would contain


def test_embedding_adapter_on_some_rows_equals_peft_with_zeros_in_the_other_columns():
    """With `rows`, A has a column per adapted token only. To PEFT that is its embedding LoRA with A zero in
    the other columns (`vocabulary_A`): same logits, same merged matrix, and our gradient is PEFT's on the
    adapted columns (PEFT would also train the others, which the restriction leaves out)."""
    base = base_model()
    model = with_random_adapters(base, targets=BLOCK_LINEARS, embedding_rank=3, embedding_alpha=5.0, embedding_rows=ROWS)
    embedding = model.transformer.wte
    assert embedding.lora_A.shape == (3, len(ROWS)) and torch.equal(embedding.rows, ROWS)
    untouched = torch.ones(VOCAB, dtype=torch.bool)
    untouched[ROWS] = False
    with torch.no_grad():
        assert torch.all(embedding.delta()[untouched] == 0) and torch.all(embedding.delta()[ROWS].abs().sum(1) > 0)
    peft_model = peft_copy(base, model, BLOCK_LINEARS)
    x, y = tokens(1), tokens(2)
    ours, loss = model(x, y)
    theirs = peft_model(x).logits
    assert (ours - theirs).abs().max() <= 1e-5
    delta = peft_model.get_input_embeddings().get_delta_weight("default")
    assert (merge_lora(model).transformer.wte.weight - (base.transformer.wte.weight + delta)).abs().max() <= 1e-6

    loss.backward()
    F.cross_entropy(theirs.view(-1, VOCAB), y.view(-1)).backward()
    peft_embedding, head = peft_model.get_input_embeddings(), peft_model.base_model.model.lm_head
    expected_a = peft_embedding.lora_embedding_A["default"].grad + head.lora_B["default"].weight.grad.T
    expected_b = peft_embedding.lora_embedding_B["default"].grad + head.lora_A["default"].weight.grad.T
    assert (embedding.lora_A.grad - expected_a[:, ROWS]).abs().max() <= 1e-5
    assert (embedding.lora_B.grad - expected_b).abs().max() <= 1e-5


def test_embedding_adapter_on_some_rows_counts_its_weights_round_trips_and_refuses_other_rows(tmp_path):
    base = base_model()
    model = with_random_adapters(base, rank=2, alpha=4.0, embedding_rank=3, embedding_rows=ROWS.flip(0))  # any order
    assert torch.equal(model.transformer.wte.rows, ROWS)  # kept sorted
    assert trainable_parameters(model) == 3 * (len(ROWS) + CONFIG.n_embd) + sum(
        p.numel() for n, p in model.named_parameters() if "lora_" in n and not n.startswith("transformer.wte"))
    assert "transformer.wte.rows" not in model.state_dict()  # the base's fingerprint and checkpoints ignore it
    save_adapter(model, tmp_path / "adapter.safetensors")
    loaded = load_adapter(copy.deepcopy(base), tmp_path / "adapter.safetensors")
    assert torch.equal(loaded.transformer.wte.rows, ROWS)
    with torch.no_grad():
        assert torch.equal(loaded(tokens())[0], model(tokens())[0])
    for other in (ROWS[:-1], None):  # other rows, or every row: the columns of A would mean other tokens
        target = add_lora(copy.deepcopy(base), rank=2, alpha=4.0, embedding_rank=3, embedding_rows=other)
        with pytest.raises(AdapterError, match="adapts other rows of the embedding"):
            load_adapter(target, tmp_path / "adapter.safetensors")
    everything = with_random_adapters(base, rank=2, alpha=4.0, embedding_rank=3)
    save_adapter(everything, tmp_path / "every_row.safetensors")
    with pytest.raises(AdapterError, match="adapts other rows of the embedding"):
        load_adapter(add_lora(copy.deepcopy(base), rank=2, alpha=4.0, embedding_rank=3, embedding_rows=ROWS),
                     tmp_path / "every_row.safetensors")


@pytest.mark.parametrize("rows, message", [
    (torch.tensor([], dtype=torch.long), "non-empty 1-D tensor of token ids"),
    (torch.tensor([1.0, 2.0]), "non-empty 1-D tensor of token ids"),
    (torch.tensor([[1, 2]]), "non-empty 1-D tensor of token ids"),
    (torch.tensor([3, VOCAB]), rf"token ids in \[0, {VOCAB}\)"),
    (torch.tensor([-1, 3]), rf"token ids in \[0, {VOCAB}\)"),
    (torch.tensor([1, 2]), "rank 3 is larger than the embedding it adapts \\(2 x 32\\)"),
])  # fmt: skip
def test_embedding_rows_that_cannot_be_adapted_are_refused(rows, message):
    with pytest.raises(ValueError, match=message):
        add_lora(copy.deepcopy(base_model()), embedding_rank=3, embedding_rows=rows)


# --- the rank of a fine-tuning update ------------------------------------------------------------


def test_low_rank_share_is_what_the_best_rank_r_matrix_keeps():
    generator = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(40, 3, generator=generator))
    v, _ = torch.linalg.qr(torch.randn(30, 3, generator=generator))
    change = u @ torch.diag(torch.tensor([3.0, 2.0, 1.0])) @ v.T  # singular values 3, 2, 1
    assert low_rank_share(change, 1) == pytest.approx(9 / 14)
    assert low_rank_share(change, 2) == pytest.approx(13 / 14)
    assert low_rank_share(change, 3) == pytest.approx(1.0) == low_rank_share(change, 10)
    noise = torch.randn(40, 30, generator=generator)  # Eckart-Young: 1 - the truncated SVD's squared error
    U, S, Vh = torch.linalg.svd(noise, full_matrices=False)
    best = U[:, :5] @ torch.diag(S[:5]) @ Vh[:5]
    assert low_rank_share(noise, 5) == pytest.approx(1 - float((noise - best).pow(2).sum() / noise.pow(2).sum()), rel=1e-6)
    assert low_rank_share(torch.zeros(4, 4), 1) == 1.0
    with pytest.raises(ValueError, match="a weight change is a matrix"):
        low_rank_share(torch.zeros(4), 1)
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        low_rank_share(noise, 0)
