"""What the layers learn: read a trained GPT's residual stream layer by layer.

A GPT is a stream of vectors, one per position, that every block reads and adds to
(`minilm.model.gpt`). Two standard ways of asking what the stream holds after each block:

- the **logit lens** (nostalgebraist, 2020): decode an intermediate stream as if it were the last
  one, through the final norm and the output head, and score the next-token predictions it makes.
  The last layer's decoding is the model's own output; the earlier layers show how far each block
  has brought the prediction.
- a **linear probe** (Alain & Bengio, 2016): fit a logistic regression that reads a fact (the
  hero's gender, say) from the stream at one position, and score it on examples it was not fitted
  on, against the accuracy of always guessing the most frequent answer. A probe that beats that
  baseline shows the fact is written in the stream, linearly; one that does not shows only that
  this probe could not find it.

All three functions are small and model-agnostic: they use the model's own modules through
forward hooks, so they read exactly the computation that `GPT.forward` does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

import torch
import torch.nn.functional as F

from minilm.model.gpt import GPT, IGNORE_INDEX


@torch.no_grad()
def residual_streams(model: GPT, tokens: torch.Tensor) -> list[torch.Tensor]:
    """The residual stream of `tokens` (B, T) after the embedding and after each block.

    Returns n_layer + 1 tensors of shape (B, T, n_embd): element 0 enters block 0 (token plus
    position embedding), element i leaves block i - 1, and the last one is what the final norm
    reads. Forward hooks record them during one ordinary forward pass. (`model.inspect` records
    the same streams, but asks every block for its attention weights, which takes the unfused
    attention path: its numbers differ from `model(tokens)` in the last digits, and the logit lens
    must match the model's output exactly.)
    """
    blocks = model.transformer.h
    streams: list[torch.Tensor] = []
    handles = [blocks[0].register_forward_pre_hook(lambda module, args: streams.append(args[0]))]
    handles += [block.register_forward_hook(lambda module, args, out: streams.append(out[0])) for block in blocks]
    try:
        model(tokens)
    finally:
        for handle in handles:
            handle.remove()
    return streams


def decode(model: GPT, stream: torch.Tensor) -> torch.Tensor:
    """Logits (..., vocab) from a residual stream (..., n_embd): the final norm, then the output head.

    This is what `GPT.forward` does to the last block's output; applied to an earlier layer's
    stream it is the logit lens. The norm matters: the head was trained on normed vectors, and the
    raw stream's scale grows from layer to layer.
    """
    return F.linear(model.transformer.ln_f(stream), model.output_weight())


@torch.no_grad()
def logit_lens(model: GPT, tokens: torch.Tensor, targets: torch.Tensor) -> list[dict]:
    """Next-token accuracy and loss of each layer's stream, decoded as if it were the last.

    `targets` (B, T) are the next tokens (-100 where there is nothing to predict). Returns one dict
    per layer, 0 (the embedding) to n_layer (the model's output): {"layer", "accuracy", "loss"},
    the loss in nats per token. The last row is the model's own accuracy and loss.
    """
    if targets.shape != tokens.shape:
        raise ValueError(f"targets have shape {tuple(targets.shape)} but tokens have {tuple(tokens.shape)}")
    scored = targets != IGNORE_INDEX
    rows = []
    for layer, stream in enumerate(residual_streams(model, tokens)):
        logits = decode(model, stream)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX)
        correct = (logits.argmax(dim=-1) == targets)[scored]
        rows.append({"layer": layer, "accuracy": correct.float().mean().item(), "loss": loss.item()})
    return rows


def linear_probe(
    features: torch.Tensor,
    labels: Sequence[Hashable],
    *,
    train_fraction: float = 0.6,
    seed: int = 0,
    l2: float = 1e-2,
    max_iter: int = 200,
) -> dict:
    """Fit a logistic regression from `features` (n, d) to `labels` (n) and score it on held-out rows.

    The rows are split at random (seeded by `seed`): `train_fraction` to fit on, the rest to score.
    Features are standardised with the fitting rows' mean and spread, so one `l2` (the weight
    penalty, which keeps the probe from memorising its fitting rows) suits any layer's scale. The
    fit is full-batch L-BFGS from zero weights, so the same inputs always give the same probe.

    Returns {"accuracy" (held-out), "train_accuracy", "baseline" (always guessing the fitting rows'
    most frequent label, scored on the held-out rows), "classes", "n_train", "n_test"}. Only the
    held-out accuracy against the baseline says something: a probe with enough dimensions can fit
    any labels on the rows it was fitted on.
    """
    n = len(labels)
    if features.dim() != 2 or features.size(0) != n:
        raise ValueError(f"features must be (n, d) with n = len(labels) = {n}; got {tuple(features.shape)}")
    n_train = round(train_fraction * n)
    if not 0 < n_train < n:
        raise ValueError(f"train_fraction={train_fraction} leaves no rows to fit or to score ({n} rows)")
    classes = sorted(set(labels), key=str)
    y = torch.tensor([classes.index(label) for label in labels])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    fit, held = order[:n_train], order[n_train:]

    x = features.detach().float().cpu()
    mean, std = x[fit].mean(dim=0), x[fit].std(dim=0)
    x = (x - mean) / (std + 1e-6)
    weight = torch.zeros(x.size(1), len(classes), requires_grad=True)
    bias = torch.zeros(len(classes), requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x[fit] @ weight + bias, y[fit]) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        predicted = (x @ weight + bias).argmax(dim=1)
    majority = Counter(y[fit].tolist()).most_common(1)[0][0]
    return {
        "accuracy": (predicted[held] == y[held]).float().mean().item(),
        "train_accuracy": (predicted[fit] == y[fit]).float().mean().item(),
        "baseline": (y[held] == majority).float().mean().item(),
        "classes": len(classes),
        "n_train": len(fit),
        "n_test": len(held),
    }
