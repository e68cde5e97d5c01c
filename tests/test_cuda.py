"""What only a CUDA GPU can check: the code paths the `gpu` preset takes and the CPU never does.

bf16 autocast on tensor cores, the flash-attention kernel behind `scaled_dot_product_attention`, the
fused AdamW kernel that `make_optimizer` picks on CUDA, `torch.compile`, and the training loop with
its tensors on the GPU. Each is compared with the plain path it replaces. Marked `cuda`: skipped,
with the reason, where PyTorch sees no CUDA GPU (conftest.py). Run them with

    pytest -m cuda tests/
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from minilm.model import GPT, GPTConfig, attention_by_hand, make_optimizer
from minilm.model.attention import causal_mask
from minilm.tokenizer import Tokenizer
from minilm.tokenizer.shards import TokenShards
from minilm.train import checkpoint as ckpt
from minilm import hardware
from minilm.train.loop import CHECKPOINTS, LOG, read_log, train

sys.path.insert(0, str(Path(__file__).parent))
from test_train import TINY, make_corpus  # noqa: E402

pytestmark = pytest.mark.cuda

DEVICE = "cuda"
CONFIG = GPTConfig(vocab_size=512, context=128, n_layer=4, n_head=4, n_embd=128)


def tokens(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randint(CONFIG.vocab_size, shape, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """The largest difference, relative to the largest value expected."""
    actual, expected = actual.float().cpu(), expected.float().cpu()
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def needs_bf16() -> None:
    if not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name()} has no bfloat16 (the gpu preset uses fp16 and a GradScaler there)")


def needs_flash_attention() -> None:
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) < (8, 0):
        pytest.skip(f"PyTorch's flash-attention kernel needs compute capability 8.0 (Ampere) or later; "
                    f"{torch.cuda.get_device_name()} has {major}.{minor}")


# --- bf16 autocast ---------------------------------------------------------------------------------


def test_bf16_autocast_forward_equals_float32():
    needs_bf16()
    x, y = tokens((4, CONFIG.context)), tokens((4, CONFIG.context), seed=1)
    reference, reference_loss = GPT(CONFIG, seed=0).eval()(x.cpu(), y.cpu())  # float32 on the CPU
    model = GPT(CONFIG, seed=0).to(DEVICE).eval()
    with torch.no_grad():
        exact, exact_loss = model(x, y)
        with hardware.autocast(DEVICE, "bf16"):
            approximate, approximate_loss = model(x, y)
    assert exact.dtype == torch.float32 and approximate.dtype == torch.bfloat16
    assert approximate_loss.dtype == torch.float32  # the loss is computed in float32 even under autocast
    # float32 on the GPU may use TF32 matmuls (10 bits of mantissa); bfloat16 keeps 8
    assert relative_error(exact, reference) < 5e-3
    assert abs(exact_loss.item() - reference_loss.item()) < 1e-3
    assert relative_error(approximate, exact) < 3e-2
    assert abs(approximate_loss.item() - exact_loss.item()) < 1e-2


# --- flash attention -------------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_flash_attention_equals_attention_by_hand(causal):
    """The fused kernel in bf16, forward and backward, against the matrix products in float32."""
    needs_flash_attention()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    generator = torch.Generator().manual_seed(0)
    shape = (2, 4, 256, 64)  # (batch, heads, time, head dim)
    # queries scaled up so that the weights are far from uniform: a wrong mask or scale shows
    q, k, v = (torch.randn(shape, generator=generator) * scale for scale in (3.0, 1.0, 1.0))
    upstream = torch.randn(shape, generator=generator).to(DEVICE)
    fast = [t.to(DEVICE, torch.bfloat16).requires_grad_() for t in (q, k, v)]
    exact = [t.to(DEVICE).requires_grad_() for t in (q, k, v)]

    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):  # this kernel or an error, never a silent fallback
        output = F.scaled_dot_product_attention(*fast, is_causal=causal)
    expected, _ = attention_by_hand(*exact, causal_mask(256, 256, DEVICE) if causal else None)
    (output.float() * upstream).sum().backward()
    (expected * upstream).sum().backward()

    assert output.dtype == torch.bfloat16
    assert relative_error(output, expected) < 2e-2
    for name, a, b in zip("qkv", fast, exact):
        assert relative_error(a.grad, b.grad) < 5e-2, f"gradient of {name}"


def test_the_models_attention_runs_on_the_flash_kernel_and_equals_the_traced_path():
    """Training's forward (fused kernel, no mask) may use flash attention, and gives the logits of
    `inspect`, which computes every layer's attention by hand."""
    needs_bf16()
    needs_flash_attention()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = GPT(CONFIG, seed=0).to(DEVICE).eval()
    x = tokens((4, CONFIG.context))
    with torch.no_grad(), hardware.autocast(DEVICE, "bf16"):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            logits, _ = model(x)
        traced = model.inspect(x).logits
    assert relative_error(logits, traced) < 3e-2


# --- the fused AdamW kernel ------------------------------------------------------------------------


def test_fused_adamw_steps_equal_the_foreach_and_for_loop_ones():
    """`make_optimizer` picks the fused kernel on CUDA; it must take the steps of the other two."""
    model = GPT(CONFIG, seed=0).to(DEVICE)
    models = {name: copy.deepcopy(model) for name in ("fused", "foreach", "for-loop")}
    fused = make_optimizer(models["fused"], lr=1e-2)
    assert all(group["fused"] for group in fused.param_groups)

    def same_groups(other: torch.nn.Module, **implementation) -> torch.optim.AdamW:
        """The package's groups (weight decay on matrices only) and hyperparameters, another kernel."""
        groups = make_optimizer(other, lr=1e-2).param_groups
        defaults = {key: groups[0][key] for key in ("lr", "betas", "eps")}
        return torch.optim.AdamW([{"params": g["params"], "weight_decay": g["weight_decay"]} for g in groups],
                                 **defaults, fused=False, **implementation)

    optimizers = {"fused": fused, "foreach": same_groups(models["foreach"], foreach=True),
                  "for-loop": same_groups(models["for-loop"], foreach=False)}
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):  # the same gradients for all three, so only the optimizer differs
        gradients = [torch.randn(p.shape, generator=generator).to(DEVICE) for p in model.parameters()]
        for name, optimizer in optimizers.items():
            for param, gradient in zip(models[name].parameters(), gradients):
                param.grad = gradient.clone()
            optimizer.step()

    moved = max((a - b).abs().max().item() for a, b in zip(models["fused"].parameters(), model.parameters()))
    assert moved > 1e-3  # the steps did something
    for name in ("foreach", "for-loop"):
        for (key, a), b in zip(models["fused"].named_parameters(), models[name].parameters()):
            torch.testing.assert_close(a, b, msg=lambda text: f"{key}, fused vs {name}: {text}")
            for moment in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(fused.state[a][moment], optimizers[name].state[b][moment])


def test_from_hf_keeps_the_hf_models_device_and_generation_runs_there():
    pytest.importorskip("transformers", reason="the Hugging Face conversion needs transformers")
    from minilm.model import generate
    from minilm.model.hf import from_hf, to_hf

    model = GPT(CONFIG, seed=0).to(DEVICE)
    back = from_hf(to_hf(model))
    assert back.transformer.wte.weight.device.type == "cuda"
    prompts = [[1, 2, 3], [4]]  # of different lengths: the padding mask and the cache live on the GPU too
    assert generate(back, prompts, 8, temperature=0) == generate(model.cpu(), prompts, 8, temperature=0)


# --- torch.compile ---------------------------------------------------------------------------------


def test_the_compiled_model_equals_eager_forward_and_backward():
    eager = GPT(CONFIG, seed=0).to(DEVICE).train()
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model)
    x, y = tokens((4, CONFIG.context)), tokens((4, CONFIG.context), seed=1)
    results = {}
    for name, model, parameters in (("eager", eager, eager), ("compiled", compiled, compiled_model)):
        logits, loss = model(x, y)
        loss.backward()
        results[name] = logits.detach(), loss.item(), {k: p.grad for k, p in parameters.named_parameters()}
    (eager_logits, eager_loss, eager_grads), (logits, loss, grads) = results["eager"], results["compiled"]
    assert relative_error(logits, eager_logits) < 5e-3  # other fusions, maybe other TF32 matmul kernels
    assert abs(loss - eager_loss) < 1e-3
    for key, gradient in eager_grads.items():
        assert relative_error(grads[key], gradient) < 2e-2, key


# --- the training loop on the GPU ------------------------------------------------------------------


def test_training_on_cuda_lowers_the_loss_and_checkpoints(tmp_path):
    """The loop with its model, batches, evaluation, samples and checkpoint on the GPU, in the
    precision the gpu preset chooses (bf16 where the GPU has it)."""
    folder = make_corpus(tmp_path / "corpus")
    tokenizer = Tokenizer.load(folder / "tokenizer")
    config = replace(TINY, device=DEVICE, precision="auto", dropout=0.0, max_steps=40, warmup_steps=5, log_every=5,
                     eval_every=20, sample_every=20, checkpoint_every=20)
    summary = train(config, TokenShards(folder / "shards", "train"), TokenShards(folder / "shards", "val"), tokenizer,
                    tmp_path / "run", progress=False)

    assert summary["device"].startswith(DEVICE) and summary["finished"]
    assert summary["precision"] == hardware.choose_precision(DEVICE)
    losses = [r["loss"] for r in read_log(tmp_path / "run" / LOG) if r["kind"] == "train"]
    assert losses[0] < math.log(tokenizer.vocab_size) + 0.5  # a fair start: about uniform over the vocabulary
    assert losses[-1] < losses[0] - 0.7, losses  # from uniform (5.8 nats) to about 4.5 in 40 steps
    assert math.isfinite(summary["val_loss"]) and summary["val_loss"] < losses[0]
    assert len(summary["samples"]) == config.final_samples
    model = ckpt.load_model(ckpt.latest_checkpoint(tmp_path / "run" / CHECKPOINTS), "cpu")  # GPU-trained, read on a CPU
    assert next(model.parameters()).device.type == "cpu"
