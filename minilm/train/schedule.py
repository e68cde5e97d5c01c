"""The learning rate over a run: a linear warmup, then a cosine decay to a floor.

    lr
    max |      .-'''-.
        |    /         '.
        |   /             '.
        |  /                 '-.
    min | /                      '--.______
        +-------------------------------------- step
          warmup          total_steps

Why warm up: at step 0 AdamW's moment estimates are built from a handful of gradients, and the
weights are random; full-size steps then can throw the model somewhere it never recovers from.
Ramping the rate up over the first few hundred steps lets the statistics settle first.

Why decay: late in training the loss is limited by the noise of each step's small batch; a smaller
rate averages that noise away. A cosine (Loshchilov & Hutter, 2017) decays slowly at first and
slowly at the end; GPT-2/3, LLaMA and nanoGPT use it, stopping at a floor of about a tenth of the
peak rather than at zero.
"""

from __future__ import annotations

import math


def learning_rate(step: int, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """The learning rate of optimizer step `step` (counted from 0).

    Warmup: (step + 1) / warmup_steps of `max_lr`, so step 0 already moves the weights a little and
    step warmup_steps - 1 reaches the peak. Then a half cosine from `max_lr` down to `min_lr` at
    `total_steps`; after that (if training runs on) the rate stays at `min_lr`.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need 0 <= warmup_steps <= total_steps, got warmup_steps={warmup_steps}, total_steps={total_steps}")
    if not 0 <= min_lr <= max_lr:
        raise ValueError(f"need 0 <= min_lr <= max_lr, got min_lr={min_lr}, max_lr={max_lr}")
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)  # 0 -> 1 over the decay
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)
