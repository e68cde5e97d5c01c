"""Stage 9's sampling: every logits processor equal to its transformers counterpart on the same logits,
the no-ops, the thresholds from both sides, per-row generators, bad parameters, and streamed text
(whole characters only, stop strings cut even when split across tokens)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from minilm.data.sources.stories import writer as stories
from minilm.infer.sampling import (
    MAX_STOP,
    MAX_STOP_CHARS,
    SamplingParams,
    TextStream,
    apply_repetition_penalty,
    choose,
    min_p_filter,
    process,
    seen_tokens,
    temperature_scale,
    top_k_filter,
    top_p_filter,
)
from minilm.tokenizer import Tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 64


@pytest.fixture(scope="module")
def logits() -> torch.Tensor:
    return 3 * torch.randn(6, VOCAB, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def previous() -> torch.Tensor:
    return torch.randint(VOCAB, (6, 12), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train([doc.text for doc in stories.iter_stories(40, seed=0)], 300)


# --- SamplingParams -----------------------------------------------------------------------------


def test_params_defaults_and_stop_list_becomes_a_tuple():
    params = SamplingParams(stop=["\n\n", "User:"])
    assert params.stop == ("\n\n", "User:") and hash(params)  # frozen and hashable
    assert (params.max_tokens, params.temperature, params.top_k, params.top_p) == (64, 1.0, None, None)
    assert (params.min_p, params.repetition_penalty, params.seed) == (None, 1.0, None)
    assert SamplingParams(temperature=0).greedy and not params.greedy
    assert params.replace(max_tokens=3).max_tokens == 3


@pytest.mark.parametrize(
    "field, good, bad",
    [
        ("max_tokens", [1, 2], [0, -3, 1.5, True]),
        ("temperature", [0, 0.0, 1e-6, 2], [-1e-6, -1, math.inf, math.nan, "1"]),
        ("top_k", [1, 1000, None], [0, -1, 2.0]),
        ("top_p", [1.0, 1, 1e-6, 0.5, None], [0, 0.0, -0.1, 1.0001]),
        ("min_p", [1.0, 1e-6, 0.1, None], [0, -0.1, 1.0001]),
        ("repetition_penalty", [1e-6, 1.0, 1.3], [0, -1.0, math.inf, math.nan]),
        ("seed", [0, 7, None], [-1, 1.5]),
    ],
)
def test_params_check_every_field_at_and_beyond_its_limit(field, good, bad):
    for value in good:
        assert getattr(SamplingParams(**{field: value}), field) == value
    for value in bad:
        with pytest.raises(ValueError, match=field):
            SamplingParams(**{field: value})


def test_params_check_stop_strings():
    assert len(SamplingParams(stop=["a"] * MAX_STOP).stop) == MAX_STOP
    with pytest.raises(ValueError, match=f"at most {MAX_STOP}"):
        SamplingParams(stop=["a"] * (MAX_STOP + 1))
    assert SamplingParams(stop=["x" * MAX_STOP_CHARS]).stop == ("x" * MAX_STOP_CHARS,)
    with pytest.raises(ValueError, match=f"at most {MAX_STOP_CHARS} characters"):
        SamplingParams(stop=["x" * (MAX_STOP_CHARS + 1)])
    with pytest.raises(ValueError, match="non-empty"):
        SamplingParams(stop=[""])
    with pytest.raises(ValueError, match=r"write stop=\['END'\]"):
        SamplingParams(stop="END")


# --- each processor equals transformers' ---------------------------------------------------------


@pytest.mark.parametrize("penalty", [0.5, 1.3, 2.0])
def test_repetition_penalty_equals_transformers(logits, previous, penalty):
    expected = RepetitionPenaltyLogitsProcessor(penalty)(previous, logits.clone())
    assert torch.equal(apply_repetition_penalty(logits, previous, penalty), expected)
    rows = [row[: 3 + i].tolist() for i, row in enumerate(previous)]  # ragged rows, one by one for HF
    ragged = apply_repetition_penalty(logits, rows, penalty)
    for i, row in enumerate(rows):
        expected = RepetitionPenaltyLogitsProcessor(penalty)(torch.tensor([row]), logits[i : i + 1].clone())
        assert torch.equal(ragged[i : i + 1], expected)


def test_repetition_penalty_by_hand():
    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0, 0.0]])
    out = apply_repetition_penalty(logits, [[0, 1, 1, 1, 4]], 2.0)  # token 1 seen three times: penalized once
    assert out.tolist() == [[1.0, -4.0, 2.0, -2.0, 0.0]]
    assert apply_repetition_penalty(logits, [[0, 1]], 1.0) is logits
    expected = torch.tensor([[1, 0, 0, 1, 0], [0, 0, 0, 0, 0], [0, 1, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(seen_tokens([[0, 3], [], [1, 1]], 5), expected)
    assert torch.equal(seen_tokens(list(expected), 5), expected)  # one mask per row, as the engine keeps them
    assert torch.equal(seen_tokens([[0, 3], [], expected[2]], 5), expected)
    assert seen_tokens(expected, 5) is expected


@pytest.mark.parametrize("temperature", [0.3, 1.0, 1.7])
def test_temperature_equals_transformers(logits, temperature):
    expected = TemperatureLogitsWarper(temperature)(None, logits.clone())
    assert torch.equal(temperature_scale(logits, temperature), expected)
    with pytest.raises(ValueError, match="argmax"):
        temperature_scale(logits, 0)


@pytest.mark.parametrize("k", [1, 2, 10, VOCAB - 1, VOCAB, VOCAB + 5])
def test_top_k_equals_transformers(logits, k):
    ours = top_k_filter(logits, k)
    assert torch.equal(ours, TopKLogitsWarper(k)(None, logits.clone()))
    assert (ours.isfinite().sum(dim=1) == min(k, VOCAB)).all()


@pytest.mark.parametrize("p", [1e-4, 0.05, 0.3, 0.5, 0.9, 0.99, 0.9999])
def test_top_p_equals_transformers(logits, p):
    ours = top_p_filter(logits, p)
    assert torch.equal(ours.isinf(), TopPLogitsWarper(p)(None, logits.clone()).isinf())
    assert torch.equal(ours, TopPLogitsWarper(p)(None, logits.clone()))


@pytest.mark.parametrize("min_p", [1e-4, 0.01, 0.1, 0.5, 1.0])
def test_min_p_equals_transformers(logits, min_p):
    ours = min_p_filter(logits, min_p)
    assert torch.equal(ours, MinPLogitsWarper(min_p)(None, logits.clone()))


def test_the_whole_chain_equals_transformers_in_its_order(logits, previous):
    params = SamplingParams(temperature=0.7, top_k=20, top_p=0.8, min_p=0.05, repetition_penalty=1.2)
    chain = LogitsProcessorList(
        [RepetitionPenaltyLogitsProcessor(1.2), TemperatureLogitsWarper(0.7), TopKLogitsWarper(20),
         TopPLogitsWarper(0.8), MinPLogitsWarper(0.05)]
    )  # fmt: skip
    assert torch.equal(process(logits, params, previous), chain(previous, logits.clone()))
    with pytest.raises(ValueError, match="previous_ids"):
        process(logits, params)


# --- no-ops and edges ----------------------------------------------------------------------------


def test_filters_that_keep_everything_are_no_ops(logits):
    assert top_p_filter(logits, 1.0) is logits
    assert top_k_filter(logits, VOCAB) is logits
    assert torch.equal(min_p_filter(logits, 1e-30), logits)
    assert torch.equal(temperature_scale(logits, 1.0), logits)


def test_the_best_token_always_stays(logits):
    best = logits.argmax(dim=1)
    for filtered in (top_p_filter(logits, 1e-9), min_p_filter(logits, 1.0), top_k_filter(logits, 1)):
        assert (filtered.isfinite().sum(dim=1) == 1).all()
        assert torch.equal(filtered.argmax(dim=1), best)


def test_thresholds_from_both_sides():
    # Probabilities 0.5, 0.25, 0.125, 0.125: the nucleus and min-p cut just under and just over each step.
    logits = torch.tensor([[0.5, 0.25, 0.125, 0.125]]).log()

    def kept(filtered):
        return filtered.isfinite().sum().item()

    assert [kept(top_p_filter(logits, p)) for p in (0.49, 0.51, 0.74, 0.76, 0.87, 0.88)] == [1, 2, 2, 3, 3, 4]
    assert [kept(min_p_filter(logits, m)) for m in (0.24, 0.26, 0.49, 0.51, 1.0)] == [4, 2, 2, 1, 1]
    assert [kept(top_k_filter(logits, k)) for k in (1, 2, 3, 4)] == [1, 2, 4, 4]  # the 3rd and 4th are tied


def test_greedy_is_argmax_after_the_penalty_only(logits, previous):
    greedy = SamplingParams(temperature=0, top_k=1, top_p=0.1, min_p=0.9)  # the filters do not matter
    assert torch.equal(choose(logits, greedy), logits.argmax(dim=1))
    penalized = SamplingParams(temperature=0, repetition_penalty=3.0)
    previous = torch.cat([previous, logits.argmax(dim=1, keepdim=True)], dim=1)  # the best tokens were seen
    expected = apply_repetition_penalty(logits, previous, 3.0).argmax(dim=1)
    assert torch.equal(choose(logits, penalized, previous), expected)
    assert (expected != logits.argmax(dim=1)).all()  # the penalty changed every row's choice


def test_top_k_1_samples_the_argmax(logits):
    generators = [torch.Generator().manual_seed(i) for i in range(len(logits))]
    assert torch.equal(choose(logits, SamplingParams(top_k=1), generators=generators), logits.argmax(dim=1))


# --- choose: HF's chain, then a draw from each row's own generator ---------------------------------


def test_choose_equals_transformers_chain_then_each_rows_draw(logits, previous):
    params = [
        SamplingParams(temperature=0.7, top_k=10),
        SamplingParams(temperature=1.3, top_p=0.9, repetition_penalty=1.5),
        SamplingParams(temperature=0),
        SamplingParams(temperature=0.7, top_k=10),  # same processing as row 0: one group
        SamplingParams(min_p=0.1),
        SamplingParams(temperature=0.7, top_k=10, repetition_penalty=1.5),
    ]
    tokens = choose(logits, params, previous, [torch.Generator().manual_seed(10 + i) for i in range(6)])
    for row, p in enumerate(params):
        chain = LogitsProcessorList()
        if p.repetition_penalty != 1.0:
            chain.append(RepetitionPenaltyLogitsProcessor(p.repetition_penalty))
        if p.greedy:
            expected = chain(previous[row : row + 1], logits[row : row + 1].clone()).argmax()
        else:
            chain.append(TemperatureLogitsWarper(p.temperature))
            chain += [w for w in (p.top_k and TopKLogitsWarper(p.top_k), p.top_p and TopPLogitsWarper(p.top_p),
                                  p.min_p and MinPLogitsWarper(p.min_p)) if w]  # fmt: skip
            probs = chain(previous[row : row + 1], logits[row : row + 1].clone()).softmax(dim=-1)
            expected = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(10 + row))[0, 0]
        assert tokens[row] == expected, row


def test_a_seeded_row_draws_the_same_token_whatever_shares_its_batch(logits):
    params = SamplingParams(temperature=1.5)
    draws_alone = []
    for row in range(len(logits)):
        generator = torch.Generator().manual_seed(row)
        draws_alone.append([choose(logits[row : row + 1], params, generators=[generator]).item() for _ in range(20)])
    generators = [torch.Generator().manual_seed(row) for row in range(len(logits))]
    draws_together = [choose(logits, params, generators=generators).tolist() for _ in range(20)]
    assert [list(column) for column in zip(*draws_together)] == draws_alone
    assert len({tuple(d) for d in draws_alone}) == len(logits)  # and the rows do differ


def test_choose_checks_its_arguments(logits):
    with pytest.raises(ValueError, match="6 rows of logits need 6 params"):
        choose(logits, [SamplingParams()] * 5)


# --- TextStream ----------------------------------------------------------------------------------


class BytesTokenizer:
    """Token i is pieces[i]: exact control over where tokens split characters and stop strings."""

    def __init__(self, pieces: list[bytes]):
        self.pieces = pieces

    def decode_token(self, token_id: int) -> bytes:
        return self.pieces[token_id]


def stream_all(tokenizer, ids, stop=()) -> tuple[list[str], TextStream]:
    stream = TextStream(tokenizer, stop)
    pieces = [stream.push(i) for i in ids]
    return pieces + [stream.finish()], stream


def test_stream_holds_back_incomplete_characters():
    cafe = "café 🙂".encode()
    tokenizer = BytesTokenizer([bytes([b]) for b in cafe])  # one byte per token: é is 2, the emoji 4
    pieces, stream = stream_all(tokenizer, range(len(cafe)))
    assert pieces == ["c", "a", "f", "", "é", " ", "", "", "", "🙂", ""]
    assert "".join(pieces) == stream.text == "café 🙂" and not stream.stopped


def test_stream_holds_back_a_possible_stop_string_and_cuts_a_split_one():
    tokenizer = BytesTokenizer([b"Hi", b" E", b"N", b"D!", b"x", b"END"])
    pieces, stream = stream_all(tokenizer, [0, 1, 2, 3, 4], stop=["END"])
    assert pieces == ["Hi", " ", "", "", "", ""]  # "E", "EN" held; "END" appears: cut before it
    assert stream.stopped and stream.text == "Hi "
    # A tail that turns out not to be a stop string is shown as soon as it cannot be one.
    pieces, stream = stream_all(tokenizer, [0, 1, 4, 2], stop=["END"])
    assert pieces == ["Hi", " ", "Ex", "N", ""] and not stream.stopped
    assert stream_all(tokenizer, [0, 1, 2], stop=["END"])[0] == ["Hi", " ", "", "EN"]  # finish() flushes


def test_stream_stops_at_the_first_stop_string_to_appear():
    tokenizer = BytesTokenizer([b"a", b"b", b"c"])
    assert "".join(stream_all(tokenizer, [0, 1, 2], stop=["abc", "b"])[0]) == "a"  # "b" is complete first
    assert "".join(stream_all(tokenizer, [0, 1, 2], stop=["bc", "ab"])[0]) == ""
    pieces, stream = stream_all(tokenizer, [2, 0, 1, 2], stop=["ab"])
    assert stream.push(0) == "" and "".join(pieces) == "c"  # nothing after the stop


def reference_text(tokenizer, ids, stop) -> str:
    """The text of the tokens up to the one that completes a stop string, cut at the earliest one."""
    for end in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:end])
        found = [text.find(s) for s in stop if s in text]  # a prefix may end in half a character: "\ufffd"
        if found:
            return text[: min(found)]
    return tokenizer.decode(ids)


def test_stream_equals_the_decoded_text_cut_at_the_first_stop(tokenizer):
    text = "Nora said: café ☕ is nice. Adam said: 🙂 END of story.\n\nUser: hi"
    ids = tokenizer.encode(text)
    split = [i for i in ids if tokenizer.decode_token(i)[0] >= 0x80 and len(tokenizer.decode_token(i)) == 1]
    assert len(ids) > 30 and split  # some characters come as single bytes, one token each
    pieces, stream = stream_all(tokenizer, ids)
    assert "".join(pieces) == text and all("\ufffd" not in piece for piece in pieces)
    stops = [["END"], ["\n\nUser:"], ["☕ is", "said"], ["é ☕"], ["🙂"], ["nowhere"], ["story.\n", "."], ["e"]]
    for stop in stops:
        pieces, stream = stream_all(tokenizer, ids, stop)
        assert "".join(pieces) == reference_text(tokenizer, ids, stop), stop
        assert stream.stopped == any(s in text for s in stop)
    assert "".join(stream_all(tokenizer, ids, ["é ☕"])[0]) == "Nora said: caf"


def test_stream_replaces_invalid_bytes_as_decode_does():
    tokenizer = BytesTokenizer([b"ok", b"\xff", b"\xe2\x98"])  # an invalid byte, then half a character at the end
    pieces, _ = stream_all(tokenizer, [0, 1, 0, 2])
    assert "".join(pieces) == b"ok\xffok\xe2\x98".decode("utf-8", errors="replace") == "ok\ufffdok\ufffd"
    with pytest.raises(ValueError, match="list of strings"):
        TextStream(tokenizer, "END")
