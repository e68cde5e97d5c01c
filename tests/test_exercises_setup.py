"""The checkers of notebook 00's exercises: they pass the package's own functions and written-out answers,
and fail, with the input and a hint, on plausible wrong answers and on unsolved stubs."""

import functools
import math
import random

import pytest
import torch

from minilm.exercises import setup as checks

from exercise_checks import assert_fails, nudged, table_tests, tolerance_tests

pytestmark = pytest.mark.usefixtures("one_thread")


# --- answers written out, as a learner would (the notebook's solutions) ---------------------------------------


def written_text_sizes(text, encode):
    return {"bytes": len(text.encode("utf-8")), "characters": len(text), "tokens": len(encode(text))}


def written_guess_losses(ids, vocab_size, n_bytes):
    counts = torch.bincount(ids, minlength=vocab_size).double()
    freqs = counts[counts > 0] / len(ids)
    uniform = math.log(vocab_size)
    unigram = -(freqs * freqs.log()).sum().item()
    per_byte = len(ids) / n_bytes / math.log(2)
    return {"uniform": uniform, "unigram": unigram, "uniform_bpb": uniform * per_byte, "unigram_bpb": unigram * per_byte}


def written_bigram(ids, vocab_size, k):
    counts = torch.zeros(vocab_size, vocab_size)
    counts.index_put_((ids[:-1], ids[1:]), torch.ones(len(ids) - 1), accumulate=True)
    counts += k
    return (counts / counts.sum(dim=1, keepdim=True)).log()


def loop_bigram(ids, vocab_size, k):  # plain Python, slower and as right
    counts = [[k] * vocab_size for _ in range(vocab_size)]
    ids = ids.tolist()
    for a, b in zip(ids, ids[1:]):
        counts[a][b] += 1
    return torch.tensor([[math.log(c / sum(row)) for c in row] for row in counts])


def written_sample(log_probs, start, length, generator):
    ids, previous = [], start
    for _ in range(length):
        previous = torch.multinomial(log_probs[previous].exp(), 1, generator=generator).item()
        ids.append(previous)
    return ids


def categorical_sample(log_probs, start, length, generator):  # the inverse of the cumulative distribution, by hand
    cumulative = log_probs.double().exp().cumsum(dim=1)
    ids, previous = [], start
    for u in torch.rand(length, generator=generator, dtype=torch.float64).tolist():
        row = cumulative[previous]
        previous = min(int(torch.searchsorted(row, u * row[-1].item(), right=True)), len(row) - 1)
        ids.append(previous)
    return ids


# --- plausible wrong answers ------------------------------------------------------------------------------------


def sizes_len_is_bytes(text, encode):  # len(text) counts code points, not bytes
    return {"bytes": len(text), "characters": len(text), "tokens": len(encode(text))}


def sizes_bytes_are_characters(text, encode):  # the encoded length taken for the characters
    return {"bytes": len(text.encode("utf-8")), "characters": len(text.encode("utf-8")), "tokens": len(encode(text))}


def sizes_words_are_tokens(text, encode):  # words are not tokens
    return {"bytes": len(text.encode("utf-8")), "characters": len(text), "tokens": len(text.split())}


def sizes_distinct_tokens(text, encode):  # the vocabulary used, not the tokens read
    return {"bytes": len(text.encode("utf-8")), "characters": len(text), "tokens": len(set(encode(text)))}


def guess_in_bits(ids, vocab_size, n_bytes):  # log2 where the loss is in nats
    right = written_guess_losses(ids, vocab_size, n_bytes)
    return {**right, "uniform": right["uniform"] / math.log(2), "unigram": right["unigram"] / math.log(2)}


def guess_uniform_over_seen(ids, vocab_size, n_bytes):  # the uniform guess over the ids that occur, not the vocabulary
    right = written_guess_losses(ids, vocab_size, n_bytes)
    uniform = math.log(len(torch.unique(ids)))
    return {**right, "uniform": uniform, "uniform_bpb": uniform * len(ids) / n_bytes / math.log(2)}


def guess_bpb_without_tokens(ids, vocab_size, n_bytes):  # nats per token / bytes: forgets there are len(ids) tokens
    right = written_guess_losses(ids, vocab_size, n_bytes)
    return {**right, "uniform_bpb": right["uniform"] / n_bytes / math.log(2),
            "unigram_bpb": right["unigram"] / n_bytes / math.log(2)}


def guess_smoothed_unigram(ids, vocab_size, n_bytes):  # add-one counts: not the frequencies of the text
    counts = torch.bincount(ids, minlength=vocab_size).double() + 1
    probs = counts / counts.sum()
    unigram = -(probs.log()[ids]).mean().item()
    right = written_guess_losses(ids, vocab_size, n_bytes)
    return {**right, "unigram": unigram, "unigram_bpb": unigram * len(ids) / n_bytes / math.log(2)}


def bigram_wraps_around(ids, vocab_size, k):  # counts the pair (last, first) too
    return written_bigram(torch.cat([ids, ids[:1]]), vocab_size, k)


def bigram_smooths_seen_pairs_only(ids, vocab_size, k):  # a pair never seen keeps probability 0
    counts = torch.zeros(vocab_size, vocab_size)
    counts.index_put_((ids[:-1], ids[1:]), torch.ones(len(ids) - 1), accumulate=True)
    counts = torch.where(counts > 0, counts + k, counts) + 1e-30
    return (counts / counts.sum(dim=1, keepdim=True)).log()


def bigram_normalises_columns(ids, vocab_size, k):  # p(previous | next): the table transposed
    probs = written_bigram(ids, vocab_size, k).exp()
    counts = probs * 0
    counts.index_put_((ids[:-1], ids[1:]), torch.ones(len(ids) - 1), accumulate=True)
    counts += k
    return (counts / counts.sum(dim=0, keepdim=True)).log()


def bigram_joint(ids, vocab_size, k):  # p(previous, next) over all pairs, not a distribution per row
    counts = torch.zeros(vocab_size, vocab_size)
    counts.index_put_((ids[:-1], ids[1:]), torch.ones(len(ids) - 1), accumulate=True)
    counts += k
    return (counts / counts.sum()).log()


def bigram_probabilities(ids, vocab_size, k):  # probabilities where log-probabilities are asked for
    return written_bigram(ids, vocab_size, k).exp()


def sample_greedy(log_probs, start, length, generator):  # always the likeliest next id: not a sample
    ids, previous = [], start
    for _ in range(length):
        previous = int(log_probs[previous].argmax())
        ids.append(previous)
    return ids


def sample_from_start_row(log_probs, start, length, generator):  # never moves on from the first row
    if length == 0:
        return []
    return torch.multinomial(log_probs[start].exp(), length, replacement=True, generator=generator).tolist()


def sample_from_column(log_probs, start, length, generator):  # the column of the previous id, not its row
    return written_sample(log_probs.T.contiguous(), start, length, generator)


def sample_with_python_random(log_probs, start, length, generator):  # ignores the generator: not reproducible
    ids, previous = [], start
    for _ in range(length):
        previous = random.choices(range(len(log_probs)), weights=log_probs[previous].exp().tolist())[0]
        ids.append(previous)
    return ids


CHECKS = [
    (checks.check_text_sizes, [written_text_sizes, checks.reference_text_sizes],
     [sizes_len_is_bytes, sizes_bytes_are_characters, sizes_words_are_tokens, sizes_distinct_tokens]),
    (checks.check_guess_losses, [written_guess_losses, checks.reference_guess_losses],
     [guess_in_bits, guess_uniform_over_seen, guess_bpb_without_tokens, guess_smoothed_unigram]),
    (checks.check_bigram, [written_bigram, loop_bigram, checks.reference_bigram],
     [bigram_wraps_around, bigram_smooths_seen_pairs_only, bigram_normalises_columns, bigram_joint, bigram_probabilities]),
    (checks.check_sample, [written_sample, categorical_sample, checks.reference_sample],
     [sample_greedy, sample_from_start_row, sample_from_column, sample_with_python_random]),
]
test_right_answers_pass, test_wrong_answers_fail_with_input_and_hint, test_unsolved_stub_says_not_solved = (
    table_tests(CHECKS, times=3))

TOLERANCES = [
    (checks.check_guess_losses, functools.partial(nudged, written_guess_losses), 1e-4, 1e-6),
    (checks.check_bigram, functools.partial(nudged, written_bigram), 1e-4, 1e-4),
]
test_an_answer_just_outside_the_tolerance_fails, test_an_answer_well_inside_the_tolerance_passes = (
    tolerance_tests(TOLERANCES))


def test_each_wrong_answer_is_told_what_is_wrong():
    assert_fails(checks.check_text_sizes, sizes_len_is_bytes, match="(?s)expected: {'bytes'")
    assert_fails(checks.check_guess_losses, guess_in_bits, match="wrong 'uniform'")
    assert_fails(checks.check_guess_losses, guess_bpb_without_tokens, match="wrong 'uniform_bpb'")
    assert_fails(checks.check_bigram, bigram_joint, match=r"row of \d+ sums to")
    assert_fails(checks.check_sample, sample_with_python_random, match="same seed gave two different texts")
    assert_fails(checks.check_sample, sample_greedy, match="in .*% of cases, but p")


def test_the_bigram_table_of_a_numpy_answer_is_accepted(capsys):
    checks.check_bigram(lambda ids, vocab_size, k: written_bigram(ids, vocab_size, k).numpy(), seed=0)
    assert "passed" in capsys.readouterr().out


def test_the_held_out_loss_of_a_bigram_table_is_the_package_cross_entropy():
    """The notebook scores a table after the exercises by picking -ln p(next | previous) out of it; as its rows are
    normalised, that is the package's cross-entropy with the table's rows as logits. With a table fitted on the very
    stream it scores and k tiny, the loss is the conditional entropy of the stream's pairs."""
    from minilm.train.objectives import token_losses

    ids = torch.tensor([0, 1, 0, 1, 0, 2, 0, 1])
    table = checks.reference_bigram(ids, 3, 1e-9)
    picked = -table[ids[:-1], ids[1:]].mean().item()
    package = token_losses(table[ids[:-1]][None].float(), ids[1:][None]).mean().item()
    after_zero = -(3 / 4 * math.log(3 / 4) + 1 / 4 * math.log(1 / 4))  # 0 is followed by 1, 1, 2, 1
    assert math.isclose(picked, 4 / 7 * after_zero, rel_tol=1e-6)  # 1 and 2 are always followed by 0: no loss there
    assert math.isclose(package, picked, rel_tol=1e-5)
