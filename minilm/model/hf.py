"""Moving weights between our GPT and Hugging Face's `GPT2LMHeadModel`.

Our parameter names follow GPT-2's (transformer.wte, transformer.h.0.attn.c_attn, ...), so the
conversion is a renaming with one twist: GPT-2 was written in TensorFlow, and HF keeps its linear
layers as `Conv1D` modules whose weight is stored (in, out), the transpose of `nn.Linear`'s (out, in).
Those four matrices per block are transposed on the way; everything else is copied as is.

Only the GPT-2 architecture converts: learned positions, LayerNorm with biases, the tanh-approximated
GELU, tied weights, one key/value head per query head, causal attention. Converting both ways
lets a test prove that our model computes exactly what GPT-2 computes, and lets the course load
OpenAI's released weights (`from_hf(GPT2LMHeadModel.from_pretrained(path))`) when a user has them.
`transformers` is imported only here, and only when called: the package does not depend on it.
"""

from __future__ import annotations

import torch

from minilm.model.config import GPTConfig
from minilm.model.gpt import GPT

TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # names HF gives the tanh approximation


def check_gpt2_shape(config: GPTConfig) -> None:
    """Raise ValueError unless `config` describes a model that GPT2LMHeadModel can hold."""
    required = dict(position="learned", norm="layernorm", mlp="gelu", bias=True, tie_weights=True, causal=True)
    wrong = [
        f"{name}={getattr(config, name)!r} (GPT-2 has {value!r})"
        for name, value in required.items()
        if getattr(config, name) != value
    ]
    if config.kv_heads != config.n_head:
        wrong.append(f"n_kv_head={config.n_kv_head} (GPT-2 has one key/value head per query head)")
    if wrong:
        raise ValueError("this model cannot be converted to GPT-2: " + "; ".join(wrong))


def state_dict_to_hf(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict -> GPT2LMHeadModel's (Conv1D weights transposed, the tied head added)."""
    converted = {name: (t.t() if name.endswith(TRANSPOSED) else t).contiguous() for name, t in state_dict.items()}
    converted["lm_head.weight"] = converted["transformer.wte.weight"]
    return converted


def state_dict_from_hf(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """GPT2LMHeadModel's state dict -> ours (drops the tied head and old HF's stored causal masks)."""
    return {
        name: (t.t() if name.endswith(TRANSPOSED) else t).contiguous()
        for name, t in state_dict.items()
        if name != "lm_head.weight" and not name.endswith((".attn.bias", ".attn.masked_bias"))
    }


def hf_config(config: GPTConfig, attn_implementation: str = "sdpa"):
    """The `transformers.GPT2Config` of the same shape (GPT-2's end-of-text token is its last id)."""
    from transformers import GPT2Config

    check_gpt2_shape(config)
    return GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.context,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_inner=config.mlp_hidden,
        activation_function="gelu_new",
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        layer_norm_epsilon=config.norm_eps,
        tie_word_embeddings=True,
        bos_token_id=config.vocab_size - 1,
        eos_token_id=config.vocab_size - 1,
        attn_implementation=attn_implementation,
    )


def config_from_hf(hf: object) -> GPTConfig:
    """Our GPTConfig for a `transformers.GPT2Config`."""
    if getattr(hf, "activation_function", "gelu_new") not in GPT2_ACTIVATIONS:
        raise ValueError(
            f"activation_function={hf.activation_function!r}: only GPT-2's tanh-approximated GELU "
            f"({' or '.join(GPT2_ACTIVATIONS)}) converts"
        )
    if not getattr(hf, "tie_word_embeddings", True):
        raise ValueError("the HF model has untied input and output embeddings; GPT-2 ties them")
    if getattr(hf, "scale_attn_by_inverse_layer_idx", False) or getattr(hf, "reorder_and_upcast_attn", False):
        raise ValueError("scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn are not GPT-2's and do not convert")
    return GPTConfig(
        vocab_size=hf.vocab_size,
        context=hf.n_positions,
        n_layer=hf.n_layer,
        n_head=hf.n_head,
        n_embd=hf.n_embd,
        mlp_hidden=None if hf.n_inner in (None, 4 * hf.n_embd) else hf.n_inner,
        dropout=hf.resid_pdrop,
        norm_eps=hf.layer_norm_epsilon,
    )


def to_hf(model: GPT, attn_implementation: str = "sdpa"):
    """A `transformers.GPT2LMHeadModel` with the same weights as `model` (a GPT-2-shaped GPT)."""
    from transformers import GPT2LMHeadModel

    with torch.random.fork_rng(devices=[]):  # HF initialises weights we overwrite: keep the caller's RNG
        hf = GPT2LMHeadModel(hf_config(model.config, attn_implementation))
    hf.to(model.transformer.wte.weight.dtype)
    missing, unexpected = hf.load_state_dict(state_dict_to_hf(model.state_dict()), strict=False)
    missing = [name for name in missing if not name.endswith((".attn.bias", ".attn.masked_bias"))]
    if missing or unexpected:
        raise ValueError(f"conversion to GPT-2 left keys unmatched: missing {missing[:5]}, unexpected {unexpected[:5]}")
    hf.tie_weights()
    return hf.to(model.transformer.wte.weight.device).train(model.training)


def from_hf(hf_model) -> GPT:
    """Our GPT with the weights of a `transformers.GPT2LMHeadModel` (for example OpenAI's GPT-2)."""
    model = GPT(config_from_hf(hf_model.config))
    model.load_state_dict(state_dict_from_hf(hf_model.state_dict()))
    return model.to(hf_model.transformer.wte.weight.device).train(hf_model.training)
