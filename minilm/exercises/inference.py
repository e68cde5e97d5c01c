"""Checkers for the exercises of notebook 09 (inference): top-p filtering, one acceptance step of speculative
decoding, and int8 quantization of a weight matrix.

Each checker draws fresh inputs (from a new seed every run, named in a failure), runs the learner's function and
the package's own (`minilm.infer`), and passes or fails on the first input where they differ. The inputs land
where a first attempt usually goes wrong: a nucleus whose last token crosses p (it stays), a p so small that only
the best token is left, rows of very flat and very peaked distributions; drafts that are accepted whole, rejected
at the first guess, or in between, with the bonus token's distribution when every guess is kept; weight rows of
very different scales, a row of zeros, and values exactly half a step from the grid.
"""

from __future__ import annotations

import random

import torch

from minilm.exercises import _short, call_learner, checker, failure, passed, torch_generator
from minilm.infer import quantize, sampling, speculative

# --- Exercise 1: top-p (nucleus) filtering ---------------------------------------------------------------------


def _logit_rows(rng: random.Random) -> list[tuple[torch.Tensor, float]]:
    """(logits (B, V), p) cases: flat and peaked rows, small and large p."""
    generator = torch_generator(rng)
    cases = []
    for _ in range(30):
        rows, vocab = rng.randint(1, 4), rng.randint(5, 40)
        sharpness = rng.choice([0.3, 1.0, 3.0, 8.0])
        logits = torch.randn(rows, vocab, generator=generator, dtype=torch.float64) * sharpness
        cases.append((logits, rng.choice([0.05, 0.3, 0.5, 0.8, 0.9, 0.95, rng.uniform(0.1, 0.99)])))
    return cases


@checker
def check_top_p(top_p_filter, rng: random.Random) -> None:
    """`top_p_filter(logits, p)` keeps, in each row, the fewest most likely tokens whose probabilities add up to
    at least p, and sets the others to -inf."""
    title = "top-p filtering"
    cases = _logit_rows(rng)
    for logits, p in cases:
        got = call_learner(title, top_p_filter, logits.clone(), p)
        want = sampling.top_p_filter(logits, p)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            raise failure(title, f"expected a tensor of shape {tuple(want.shape)}, got {_short(got)}",
                          f"logits of shape {tuple(logits.shape)}, p={p:.3f}",
                          "return the logits with the dropped tokens set to float('-inf'), same shape")
        kept, kept_got = torch.isfinite(want), torch.isfinite(got)
        if not torch.equal(kept, kept_got):
            row = int((kept != kept_got).any(dim=1).nonzero()[0])
            probs = torch.softmax(logits[row], dim=-1)
            order = probs.argsort(descending=True)
            need, have = int(kept[row].sum()), int(kept_got[row].sum())
            hint = ("you dropped the token that carries the mass past p: keep adding tokens, most likely first, "
                    "until their total is at least p, the last one included" if have == need - 1 else
                    "you kept one token too many: stop as soon as the total reaches p" if have == need + 1 else
                    "the best token always stays" if have == 0 else
                    "sort the probabilities (softmax of the logits) from most to least likely, add them up, and keep "
                    "the tokens up to and including the one where the total first reaches p")
            raise failure(title, f"row {row} keeps {have} tokens; the nucleus has {need}",
                          f"probabilities of row {row}, most likely first: "
                          f"{_short([round(float(probs[i]), 4) for i in order])}, p={p:.3f}", hint)
        if not torch.equal(got[kept], logits[kept]):
            raise failure(title, "the kept tokens' logits changed", f"p={p:.3f}",
                          "leave the kept logits as they are: only the dropped ones become -inf")
    passed(title, f"{len(cases)} batches of logits")


# --- Exercise 2: one acceptance step of speculative decoding ----------------------------------------------------


def _draft_cases(rng: random.Random) -> list[tuple[torch.Tensor, torch.Tensor, list[int], list[float]]]:
    """(target_probs (k+1, V), draft_probs (k, V), draft tokens, uniforms) with every outcome represented."""
    generator = torch_generator(rng)
    cases = []
    for index in range(40):
        k, vocab = rng.randint(1, 5), rng.randint(3, 8)
        q = torch.softmax(torch.randn(k, vocab, generator=generator, dtype=torch.float64) * 1.5, dim=-1)
        closeness = [0.0, 0.5, 0.9, 1.0][index % 4]  # 1.0: the draft is the target, every guess is kept
        noise = torch.softmax(torch.randn(k + 1, vocab, generator=generator, dtype=torch.float64) * 1.5, dim=-1)
        p = noise.clone()
        p[:k] = closeness * q + (1 - closeness) * noise[:k]
        tokens = [int(torch.multinomial(q[i].float(), 1, generator=generator)) for i in range(k)]
        uniforms = [rng.random() for _ in range(k)]
        cases.append((p, q, tokens, uniforms))
    return cases


def _accept_reference(p: torch.Tensor, q: torch.Tensor, tokens: list[int], uniforms: list[float]):
    """The package's rule, with the uniforms given: accept guess i when u_i * q_i(x_i) < p_i(x_i)."""
    for i, token in enumerate(tokens):
        if not uniforms[i] * q[i, token] < p[i, token]:
            return i, speculative.residual_distribution(p[i], q[i])
    return len(tokens), p[len(tokens)]


@checker
def check_accept_drafts(accept_drafts, rng: random.Random) -> None:
    """`accept_drafts(target_probs, draft_probs, draft_tokens, uniforms)` returns (how many guesses are kept, the
    distribution the next token is drawn from)."""
    title = "speculative acceptance"
    cases = _draft_cases(rng)
    outcomes = set()
    for p, q, tokens, uniforms in cases:
        got = call_learner(title, accept_drafts, p.clone(), q.clone(), list(tokens), list(uniforms))
        n, dist = _accept_reference(p, q, tokens, uniforms)
        shown = (f"k={len(tokens)}, draft tokens {tokens}, uniforms {_short([round(u, 3) for u in uniforms])}, "
                 f"p(x)/q(x) = {_short([round(float(p[i, t] / q[i, t]), 3) for i, t in enumerate(tokens)])}")
        if not (isinstance(got, tuple) and len(got) == 2):
            raise failure(title, f"expected a pair (kept, distribution), got {_short(got)}", shown,
                          "return how many draft tokens are kept (an int) and a probability vector of length V")
        kept, got_dist = got
        if int(kept) != n:
            hint = ("accept guess i when u_i < p_i(x_i) / q_i(x_i) (so a guess the target likes more than the draft "
                    "is always kept), and stop at the first rejection" if n != len(tokens) or int(kept) < n else
                    "after the first rejection, no later guess counts: stop there")
            raise failure(title, f"expected {n} guesses kept, got {kept}", shown, hint)
        got_dist = torch.as_tensor(got_dist, dtype=torch.float64)
        if got_dist.shape != dist.shape or not torch.allclose(got_dist, dist, atol=1e-9):
            hint = ("every guess was kept: the next token is a bonus, drawn from the target's distribution after the "
                    "last guess, target_probs[k]" if n == len(tokens) else
                    "after a rejection at position i, draw from max(0, p_i - q_i), normalised to sum to 1: the mass the "
                    "target gives beyond what the draft already offered")
            raise failure(title, f"the next token's distribution is {_short(got_dist.tolist())}, expected "
                          f"{_short(dist.tolist())}", shown, hint)
        outcomes.add("all kept" if n == len(tokens) else "first rejected" if n == 0 else "some kept")
    passed(title, f"{len(cases)} rounds: {', '.join(sorted(outcomes))}")


# --- Exercise 3: int8 quantization of a weight matrix ----------------------------------------------------------


def _weights(rng: random.Random) -> list[torch.Tensor]:
    generator = torch_generator(rng)
    found = []
    for index in range(12):
        rows, columns = rng.randint(2, 8), rng.randint(3, 16)
        scales = torch.tensor([10 ** rng.uniform(-3, 1) for _ in range(rows)])[:, None]
        w = torch.randn(rows, columns, generator=generator) * scales
        if index == 0 or rng.random() < 0.3:
            w[rng.randrange(rows)] = 0.0  # a row of zeros: no division by zero
        if rng.random() < 0.4:  # a value exactly half a step from the grid, which rounds to even
            row = rng.randrange(rows)
            step = w[row].abs().max() / 127
            if step > 0:
                w[row, rng.randrange(columns)] = step * 2.5
        found.append(w)
    return found


@checker
def check_quantize_int8(functions, rng: random.Random) -> None:
    """`functions` is the pair (quantize_int8, dequantize_int8): symmetric int8 with one scale per output row,
    scale = the row's largest absolute value / 127 (1 for a row of zeros), q = round(w / scale); and back,
    q * scale."""
    title = "int8 quantization"
    quantize_int8, dequantize_int8 = functions
    weights = _weights(rng)
    for w in weights:
        got = call_learner(title, quantize_int8, w.clone())
        q, scale = quantize.quantize_int8(w)
        maxima = _short([round(float(m), 4) for m in w.abs().amax(1)])
        shown = f"a weight matrix {tuple(w.shape)} with row maxima {maxima}"
        if not (isinstance(got, tuple) and len(got) == 2):
            raise failure(title, f"expected a pair (q, scale), got {_short(got)}", shown,
                          "return the int8 matrix and the float scales, one per row")
        got_q, got_scale = got
        if not isinstance(got_scale, torch.Tensor) or got_scale.shape != scale.shape:
            hint = ("one scale per output row (w.abs().amax(dim=1) / 127), not one for the whole matrix: a row of "
                    "small weights would lose every digit" if not isinstance(got_scale, torch.Tensor)
                    or got_scale.numel() == 1 else "the scales have one entry per row of the weight matrix")
            raise failure(title, f"scale has shape {tuple(getattr(got_scale, 'shape', ()))}, expected "
                          f"{tuple(scale.shape)}", shown, hint)
        if not torch.allclose(got_scale.float(), scale, rtol=1e-6, atol=0):
            zero = w.abs().amax(1) == 0
            hint = ("a row of zeros needs a scale too (take 1): any scale gives q = 0 there, and 0/0 is nan"
                    if zero.any() and not (got_scale[zero] > 0).all() else
                    "scale = the row's largest absolute value / 127, so that the largest weight maps to +-127")
            raise failure(title, "wrong scales", shown, hint)
        if not isinstance(got_q, torch.Tensor) or got_q.dtype != torch.int8:
            raise failure(title, f"q must be an int8 tensor, got {getattr(got_q, 'dtype', type(got_q).__name__)}",
                          shown, "convert with .to(torch.int8) after rounding")
        if not torch.equal(got_q, q):
            truncated = torch.equal(got_q, (w / scale[:, None]).clamp(-127, 127).to(torch.int8))
            hint = ("round to the nearest integer before converting: .to(torch.int8) alone truncates towards zero"
                    if truncated else "q = round(w / scale), with the row's own scale, clamped to -127..127")
            raise failure(title, "wrong integers", shown, hint)
        back = call_learner(title, dequantize_int8, q.clone(), scale.clone())
        want = quantize.dequantize_int8(q, scale)
        if not isinstance(back, torch.Tensor) or back.shape != want.shape or not torch.allclose(back.float(), want):
            raise failure(title, "dequantize_int8 gives the wrong floats", shown,
                          "multiply each row of q (as floats) by its scale: q.float() * scale[:, None]")
        error = (back.float() - w).abs().max()
        bound = (scale[:, None] / 2).expand_as(w).max()
        if error > bound * (1 + 1e-5):
            raise failure(title, f"the round trip is off by {float(error):.3g}, more than half a step", shown,
                          "rounding to the nearest step keeps every weight within half a step (scale / 2)")
    passed(title, f"{len(weights)} matrices, every weight back within half a step")
