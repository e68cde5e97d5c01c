"""A test model whose weights are large enough to matter, shared by the tests that compare two computations."""

from __future__ import annotations

import torch

from minilm.model import GPT, GPTConfig


def spread_weights(model: GPT, std: float, seed: int = 0, keep: tuple[str, ...] = ("transformer.wpe",)) -> GPT:
    """`model`, in eval mode, with every matrix drawn again from N(0, std²) (seeded) instead of the init's small
    weights: its logits then differ visibly from token to token, so that a test of two computations being equal
    cannot pass because both give nearly uniform outputs. Parameters whose names start with `keep` (by default
    the learned positions) keep their init."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2 and not name.startswith(keep):
                param.normal_(0.0, std, generator=generator)
    return model.eval()


def small_gpt(vocab_size: int, context: int, std: float) -> GPT:
    """A GPT-2-shaped model of 2 layers, 2 heads and 32 channels, its matrices spread to `std`."""
    return spread_weights(GPT(GPTConfig(vocab_size=vocab_size, context=context, n_layer=2, n_head=2, n_embd=32), seed=0), std)
