"""Stage 3: the transformer, one idea per module, read in this order.

- `config`: `GPTConfig`, the shape of the model, and the named sizes (GPT-2's and the course's);
- `layers`: norms (LayerNorm, RMSNorm), MLPs (GELU, SwiGLU), positions (learned, sinusoidal, rotary);
- `attention`: causal (or bidirectional) multi-head / grouped-query self-attention, by hand and fused,
  and the KV cache;
- `gpt`: the decoder-only GPT (and, with `causal=False`, an encoder for masked language modelling);
- `generate`: sampling with the KV cache, for batches of prompts;
- `accounting`: parameters, FLOPs and memory, from the config alone;
- `hf`: converting weights to and from Hugging Face's GPT-2.
"""

from minilm.model.accounting import count_parameters, flops_per_token, memory_estimate, mfu, parameter_counts
from minilm.model.attention import KVCache, attention_by_hand
from minilm.model.config import SIZES, GPTConfig, config_named
from minilm.model.generate import generate, sample, stream
from minilm.model.gpt import GPT, Trace, make_optimizer, mask_tokens

__all__ = [
    "GPT",
    "GPTConfig",
    "KVCache",
    "SIZES",
    "Trace",
    "attention_by_hand",
    "config_named",
    "count_parameters",
    "flops_per_token",
    "generate",
    "make_optimizer",
    "mask_tokens",
    "memory_estimate",
    "mfu",
    "parameter_counts",
    "sample",
    "stream",
]
