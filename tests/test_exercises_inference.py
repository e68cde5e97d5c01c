"""The checkers of notebook 09's exercises (top-p filtering, the speculative acceptance step, int8 quantization):
they pass the package's own functions and written-out answers, and fail, with the input and a hint, on plausible
wrong answers and on unsolved stubs."""

import pytest
import torch

from minilm.exercises import inference as checks
from minilm.infer import quantize, sampling, speculative

from exercise_checks import assert_fails, assert_not_solved, assert_passes, stub

# --- Exercise 1: top-p --------------------------------------------------------------------------------------------


def written_top_p(logits, p):
    probs = torch.softmax(logits, dim=-1)
    order = probs.argsort(dim=-1, descending=True)
    sorted_probs = probs.gather(-1, order)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs  # the mass of the more likely tokens
    drop_sorted = before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def drops_the_crossing_token(logits, p):
    probs = torch.softmax(logits, dim=-1)
    order = probs.argsort(dim=-1, descending=True)
    sorted_probs = probs.gather(-1, order)
    drop_sorted = sorted_probs.cumsum(dim=-1) > p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def keeps_everything(logits, p):
    return logits


def test_top_p_passes_the_package_and_a_written_answer(capsys):
    assert_passes(checks.check_top_p, sampling.top_p_filter, capsys, times=3)
    assert_passes(checks.check_top_p, written_top_p, capsys, times=3)


@pytest.mark.parametrize("answer, match", [(drops_the_crossing_token, "dropped the token that carries the mass"),
                                           (keeps_everything, "keeps")])
def test_top_p_fails_wrong_answers(answer, match):
    assert_fails(checks.check_top_p, answer, match=match)


def test_top_p_fails_a_stub():
    assert_not_solved(checks.check_top_p)


# --- Exercise 2: the speculative acceptance step --------------------------------------------------------------


def written_accept(p, q, tokens, uniforms):
    for i, token in enumerate(tokens):
        if uniforms[i] < p[i, token] / q[i, token]:
            continue
        residual = (p[i] - q[i]).clamp(min=0)
        return i, residual / residual.sum()
    return len(tokens), p[len(tokens)]


def residual_is_p(p, q, tokens, uniforms):
    n, dist = written_accept(p, q, tokens, uniforms)
    return n, p[n]


def never_stops(p, q, tokens, uniforms):
    kept = sum(uniforms[i] < p[i, t] / q[i, t] for i, t in enumerate(tokens))
    return kept, written_accept(p, q, tokens, uniforms)[1]


def accepts_on_p_alone(p, q, tokens, uniforms):
    for i, token in enumerate(tokens):
        if not uniforms[i] < p[i, token]:
            residual = (p[i] - q[i]).clamp(min=0)
            return i, residual / residual.sum()
    return len(tokens), p[len(tokens)]


def test_accept_passes_written_answers(capsys):
    assert_passes(checks.check_accept_drafts, written_accept, capsys, times=3)


def test_the_reference_is_the_package_rule():
    """The checker's rule with explicit uniforms keeps as many guesses as `speculative.accept_step` with the same
    random numbers (accept_step draws one uniform per guess judged, then one token)."""
    import random

    for seed, (p, q, tokens, _) in enumerate(checks._draft_cases(random.Random(5))):
        generator = torch.Generator().manual_seed(seed)
        replay = torch.Generator().manual_seed(seed)
        uniforms = [float(torch.rand((), generator=replay)) for _ in tokens]
        out = speculative.accept_step(p.float(), q.float(), tokens, generator)
        kept, _ = checks._accept_reference(p.float(), q.float(), tokens, uniforms)
        assert len(out) - 1 == kept and out[:kept] == tokens[:kept]


@pytest.mark.parametrize("answer, match", [(residual_is_p, "max\\(0, p_i - q_i\\)"),
                                           (never_stops, "guesses kept"),
                                           (accepts_on_p_alone, "guesses kept")])
def test_accept_fails_wrong_answers(answer, match):
    assert_fails(checks.check_accept_drafts, answer, match=match)


def test_accept_fails_a_stub():
    assert_not_solved(checks.check_accept_drafts)


# --- Exercise 3: int8 -------------------------------------------------------------------------------------------


def written_quantize(w):
    scale = w.abs().amax(dim=1) / 127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def written_dequantize(q, scale):
    return q.float() * scale[:, None]


def truncates(w):
    q, scale = written_quantize(w)
    return (w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def one_scale(w):
    scale = w.abs().max() / 127
    return torch.round(w / scale).clamp(-127, 127).to(torch.int8), scale


def divides_by_zero(w):
    scale = w.abs().amax(dim=1) / 127
    return torch.round(w / scale[:, None]).clamp(-127, 127).nan_to_num(0).to(torch.int8), scale


def test_int8_passes_the_package_and_a_written_answer(capsys):
    assert_passes(checks.check_quantize_int8, (quantize.quantize_int8, quantize.dequantize_int8), capsys, times=3)
    assert_passes(checks.check_quantize_int8, (written_quantize, written_dequantize), capsys, times=3)


@pytest.mark.parametrize("answer, match", [((truncates, written_dequantize), "truncates"),
                                           ((one_scale, written_dequantize), "one scale per output row"),
                                           ((divides_by_zero, written_dequantize), "row of zeros"),
                                           ((written_quantize, lambda q, s: q.float() * s.mean()), "dequantize")])
def test_int8_fails_wrong_answers(answer, match):
    assert_fails(checks.check_quantize_int8, answer, match=match)


def test_int8_fails_a_stub():
    assert_fails(checks.check_quantize_int8, (stub, stub), match="not solved yet")
