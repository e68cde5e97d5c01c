"""How big a model is, how much arithmetic it costs, and how much memory training it takes.

All three follow from the config alone, before any weight exists, which is how one plans a run:
- parameters, by part (a test checks the sum against the real model's tensors);
- FLOPs per token: a forward pass does one multiply and one add per weight per token (2N) plus
  attention's dot products with the context (4 * n_layer * T * n_embd); the backward pass costs twice
  the forward, so training costs 6N + 12 * n_layer * T * n_embd per token (Kaplan et al. 2020, and
  the PaLM paper's appendix B, which nanoGPT's `estimate_mfu` follows). Like them we count the full
  T x T attention, although a causal mask needs only half of it;
- memory: weights, gradients and AdamW's two moments, plus the activations that the forward pass
  keeps for the backward pass, which grow with batch size and context.

MFU (model FLOPs utilisation) compares the FLOPs a step does by this count with what the hardware
could do at its peak: the fraction of the machine a training run actually uses.
"""

from __future__ import annotations

from torch import nn

from minilm.model.config import GPTConfig


def parameter_counts(config: GPTConfig) -> dict[str, int]:
    """The number of parameters of each part of the model, and their `total`."""
    width, layers, head_dim = config.n_embd, config.n_layer, config.head_dim
    bias = int(config.bias)
    qkv = (config.n_head + 2 * config.kv_heads) * head_dim
    attention = (width * qkv + bias * qkv) + (width * width + bias * width)
    if config.mlp == "swiglu":  # gate and up (one fused matrix), then down
        mlp = (width * 2 * config.hidden + bias * 2 * config.hidden) + (config.hidden * width + bias * width)
    else:
        mlp = (width * config.hidden + bias * config.hidden) + (config.hidden * width + bias * width)
    norm = width * (2 if config.norm == "layernorm" and config.bias else 1)
    counts = {
        "token_embedding": config.vocab_size * width,
        "position_embedding": config.context * width if config.position == "learned" else 0,
        "attention": layers * attention,
        "mlp": layers * mlp,
        "norms": (2 * layers + 1) * norm,
        "lm_head": 0 if config.tie_weights else config.vocab_size * width,
    }
    counts["total"] = sum(counts.values())
    return counts


def count_parameters(model: nn.Module) -> int:
    """The parameters a model really has (a tied matrix counted once)."""
    return sum(p.numel() for p in model.parameters())


def matmul_parameters(config: GPTConfig) -> int:
    """The weights that multiply activations: every matrix in the blocks, and the output head.

    The token embedding is a lookup (no arithmetic) but the head is a matmul, so a tied matrix counts
    once, as the head. Biases, norms and position embeddings are additions: left out, as is customary.
    """
    width, qkv = config.n_embd, (config.n_head + 2 * config.kv_heads) * config.head_dim
    up = 2 * config.hidden if config.mlp == "swiglu" else config.hidden
    per_layer = width * qkv + width * width + width * up + config.hidden * width
    return config.n_layer * per_layer + config.vocab_size * width


def flops_per_token(config: GPTConfig, seq_len: int | None = None) -> dict[str, int]:
    """FLOPs per token of a forward pass and of a training step (forward + backward) at context `seq_len`,
    and the output head's part of the training FLOPs ("head": a step that computes the head only at the
    positions it trains, `GPT.forward(only_trained=True)`, skips that part elsewhere)."""
    seq_len = config.context if seq_len is None else seq_len
    attention = 4 * config.n_layer * seq_len * config.n_embd  # q.k for every key, then weights x values
    forward = 2 * matmul_parameters(config) + attention
    return {"forward": forward, "training": 3 * forward, "head": 3 * 2 * config.vocab_size * config.n_embd}


def mfu(config: GPTConfig, tokens_per_second: float, peak_flops: float, seq_len: int | None = None) -> float:
    """Model FLOPs utilisation of training at `tokens_per_second` on hardware of `peak_flops` FLOP/s."""
    return flops_per_token(config, seq_len)["training"] * tokens_per_second / peak_flops


def memory_estimate(
    config: GPTConfig, batch_size: int, seq_len: int | None = None, mixed_precision: bool = False
) -> dict[str, int]:
    """Bytes needed to train with AdamW: float32 weights, gradients and AdamW's two moments (16 bytes
    per parameter), plus the activations that the forward pass keeps for the backward pass.

    Activations are counted tensor by tensor, as our blocks save them (a test checks the count per
    token, to the byte, against the tensors autograd really keeps). Per token and block: the residual
    stream entering each norm, with the norm's statistics (LayerNorm: mean and 1/std; RMSNorm as
    written: 1/rms and its normalised output); the input of the qkv projection, q|k|v, and the
    attention output, which is also the input of the output projection (flash attention keeps no
    T x T matrix, only a log-sum-exp per head); the MLP's input, its hidden activations before and
    after the nonlinearity (SwiGLU: gate|up, silu(gate), and the product). Then the final norm's and
    the head's inputs, the log-softmax over the vocabulary that the loss keeps, and the targets.
    With `mixed_precision` (bf16 autocast) what the matmuls read is stored in 2 bytes instead of 4,
    the residual stream and the loss stay in float32, and autocast keeps a bf16 copy of every weight
    matrix for the step. Not counted: dropout masks (1 byte per value when dropout > 0), the
    allocator's slack and temporary buffers.
    """
    seq_len = config.context if seq_len is None else seq_len
    tokens = batch_size * seq_len
    width, hidden = config.n_embd, config.hidden
    low = 2 if mixed_precision else 4  # bytes per value of what autocast computes in bf16
    qkv = (config.n_head + 2 * config.kv_heads) * config.head_dim

    # one norm, float32: its input and statistics (LayerNorm), or input, normalised output and 1/rms
    norm = 4 * width + 8 if config.norm == "layernorm" else 4 * 2 * width + 4
    # q, k and v as the attention kernel gets them: views of the projection's output (which then stays
    # alive whole), except those that RoPE rotated or GQA repeated for every query head, which are new.
    # (Repeating a single key/value head, as multi-query attention does, is a stride-0 view: no copy.)
    rotated, repeated = config.position == "rope", 1 < config.kv_heads < config.n_head
    new = (width if rotated else 0) + (width if repeated else config.kv_heads * config.head_dim if rotated else 0)
    new += width if repeated else 0
    views = not rotated or not repeated
    attention = low * (width + new + (qkv if views else 0) + width) + 4 * config.n_head
    mlp = low * (width + (4 * hidden if config.mlp == "swiglu" else 2 * hidden))
    head = norm + low * width + 4 * config.vocab_size + 8  # the final norm, the head's input, log-softmax, target

    parameters = parameter_counts(config)["total"]
    estimate = {
        "weights": 4 * parameters,
        "gradients": 4 * parameters,
        "optimizer": 8 * parameters,
        "autocast_copies": 2 * matmul_parameters(config) if mixed_precision else 0,
        "activations": tokens * (config.n_layer * (2 * norm + attention + mlp) + head),
    }
    estimate["total"] = sum(estimate.values())
    return estimate
