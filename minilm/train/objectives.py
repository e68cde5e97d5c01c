"""What the model is trained to predict: the two pretraining objectives, on the same token shards.

- **causal** (next-token prediction, GPT): read a window of tokens, predict each next one. The input
  is window[:-1], the target window[1:]; every position is a prediction, so a batch of B windows of
  T tokens gives B x T training signals. A decoder's causal mask keeps position t from seeing t+1.
- **masked** (masked language modelling, BERT): hide 15% of a window's tokens and predict them from
  both sides. Of the hidden positions 80% show a mask token, 10% a random token and 10% the true one,
  so the model cannot learn that only the mask token needs predicting (`minilm.model.mask_tokens`).
  Only 15% of positions give a training signal, one reason encoders need more data than decoders
  for the same loss; the gain is that every prediction sees the whole window.

Our tokenizer has no <|mask|> token; the encoder uses <|pad|>, which never occurs in pretraining text.

The masking draws from a `torch.Generator` on the CPU, before the batch moves to the device, so the
masks are the same on every machine and can be recomputed from the step number when resuming.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from minilm.model.config import GPTConfig
from minilm.model.gpt import IGNORE_INDEX, mask_tokens

OBJECTIVES = ("causal", "masked")
MASK_TOKEN = "<|pad|>"


def check_objective(objective: str, config: GPTConfig) -> None:
    """A decoder learns the causal objective, an encoder the masked one; anything else is a mistake."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective={objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if objective == "causal" and not config.causal:
        raise ValueError("the causal objective needs a decoder: an encoder (causal=False) would see the token it must predict")
    if objective == "masked" and config.causal:
        raise ValueError("masked language modelling needs an encoder (GPTConfig(causal=False)): a decoder cannot see the right side")


def make_batch(
    x: np.ndarray,
    y: np.ndarray,
    objective: str,
    *,
    mask_id: int | None = None,
    vocab_size: int | None = None,
    generator: torch.Generator | None = None,
    mask_rate: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows from the shards -> (inputs, targets) as int64 CPU tensors for `model(inputs, targets)`.

    `x`, `y` are `TokenShards.batch`'s arrays (y is x shifted by one). The masked objective uses x
    only and needs `mask_id`, `vocab_size` and a CPU `generator` for the masks.
    """
    inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64))
    if objective == "causal":
        return inputs, torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    if objective == "masked":
        if mask_id is None or vocab_size is None or generator is None:
            raise ValueError("the masked objective needs mask_id, vocab_size and a generator")
        return mask_tokens(inputs, mask_id, vocab_size, generator, rate=mask_rate)
    raise ValueError(f"objective={objective!r}; choose one of {', '.join(OBJECTIVES)}")


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The cross-entropy of every position (B, T) in nats, 0 where the target is ignored (-100).

    The mean over a batch is what training minimises; evaluation needs the positions one by one, to
    weigh them by the bytes of their target token (bits per byte).
    """
    losses = F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
    )
    return losses.view(targets.shape)
