"""Stage 9's engine: greedy output equal to stage 3's `generate` and to transformers' `generate`, requests
that join and leave a running batch getting exactly what they get alone (greedy and seeded sampling),
the batch cap and first-come-first-served, cancelling, why requests finish, bad prompts, and the
BatchCache's rows, trimming, merging and growth."""

from __future__ import annotations

import pytest
import torch

from minilm.data.sources.stories import writer as stories
from minilm.infer.engine import BatchCache, Completion, Engine, Event
from minilm.infer.sampling import SamplingParams
from minilm.model.attention import KVCache
from minilm.model.config import GPTConfig
from minilm.model.generate import generate
from minilm.model.gpt import GPT
from minilm.tokenizer import Tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

GREEDY = SamplingParams(max_tokens=12, temperature=0)
SENTENCES = [
    "Once upon a time",
    "Nora",
    "She liked to sing while she worked, and every morning she danced on a big stage.",
    "Adam was Nora's best friend.",
    "One windy day, Nora went to the beach with her shiny green bike.",
]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train([doc.text for doc in stories.iter_stories(40, seed=0)], 300)


@pytest.fixture(scope="module")
def model(tokenizer) -> GPT:
    return GPT(GPTConfig(vocab_size=tokenizer.vocab_size, context=128, n_layer=2, n_head=2, n_embd=64), seed=3)


@pytest.fixture(scope="module")
def rope_model(tokenizer) -> GPT:
    """LLaMA's choices: rotary positions (which must count real tokens only) and grouped-query attention."""
    config = GPTConfig(vocab_size=tokenizer.vocab_size, context=128, n_layer=2, n_head=4, n_kv_head=2, n_embd=64,
                       position="rope", norm="rmsnorm", mlp="swiglu", bias=False)  # fmt: skip
    return GPT(config, seed=4)


@pytest.fixture(scope="module")
def prompts(tokenizer) -> list[list[int]]:
    ids = [tokenizer.encode(text) for text in SENTENCES]
    assert len({len(p) for p in ids}) == len(ids)  # all lengths differ
    return ids


def engine(model, tokenizer, **options) -> Engine:
    return Engine(model, tokenizer, end_tokens=options.pop("end_tokens", ()), **options)


def alone(model, prompt, n) -> list[int]:
    return generate(model, [prompt], n, temperature=0)[0]


def drive(engine: Engine, schedule: dict[int, list[tuple[list[int], SamplingParams]]]) -> dict[int, list[Event]]:
    """Step the engine, adding schedule[step]'s requests before that step; returns each request's events."""
    events: dict[int, list[Event]] = {}
    step = 0
    while engine.has_work or step <= max(schedule):
        for prompt, params in schedule.get(step, []):
            events[engine.add(prompt, params)] = []
        for event in engine.step():
            events[event.request_id].append(event)
        assert engine.running <= engine.max_batch_size
        step += 1
    return events


def tokens_of(events: list[Event]) -> list[int]:
    return [e.token for e in events if e.token is not None]


# --- the same tokens as generating alone ---------------------------------------------------------


def test_greedy_equals_generate_alone_and_together(model, tokenizer, prompts):
    completions = engine(model, tokenizer).run(prompts, GREEDY)
    together = generate(model, prompts, 12, temperature=0)
    for prompt, completion, batched in zip(prompts, completions, together):
        assert completion.token_ids == alone(model, prompt, 12) == batched
        assert completion == Completion(batched, tokenizer.decode(batched), "length", len(prompt))


def test_greedy_and_repetition_penalty_equal_transformers_generate(model, tokenizer, prompts):
    from minilm.model.hf import to_hf

    hf = to_hf(model).eval()
    run = engine(model, tokenizer)
    for penalty in (1.0, 1.3):
        params = SamplingParams(max_tokens=15, temperature=0, repetition_penalty=penalty)
        for prompt, completion in zip(prompts[:3], run.run(prompts[:3], params)):
            with torch.no_grad():
                out = hf.generate(
                    torch.tensor([prompt]), max_new_tokens=15, do_sample=False, repetition_penalty=penalty,
                    eos_token_id=None, pad_token_id=0,
                )  # fmt: skip
            assert completion.token_ids == out[0, len(prompt) :].tolist()
    assert run.run([prompts[0]], GREEDY.replace(max_tokens=15, repetition_penalty=1.3))[0].token_ids != alone(
        model, prompts[0], 15
    )  # the penalty changed the greedy text


@pytest.mark.parametrize("which", ["model", "rope_model"])
def test_requests_joining_a_running_batch_get_what_they_get_alone(which, tokenizer, prompts, request):
    model = request.getfixturevalue(which)
    lengths = [9, 14, 6, 11, 8]
    schedule = {
        0: [(prompts[0], GREEDY.replace(max_tokens=lengths[0]))],
        2: [(prompts[1], GREEDY.replace(max_tokens=lengths[1]))],
        3: [(prompts[2], GREEDY.replace(max_tokens=lengths[2])), (prompts[3], GREEDY.replace(max_tokens=lengths[3]))],
        7: [(prompts[4], GREEDY.replace(max_tokens=lengths[4]))],
    }
    run = engine(model, tokenizer, max_batch_size=3)
    events = drive(run, schedule)
    for request, (prompt, n) in enumerate(zip(prompts, lengths)):
        assert tokens_of(events[request]) == alone(model, prompt, n), request
        assert "".join(e.text for e in events[request]) == tokenizer.decode(alone(model, prompt, n))
        assert [e.finish_reason for e in events[request]] == [None] * (n - 1) + ["length"]
    assert run._cache is None and not run.has_work  # every row left


def test_seeded_sampling_is_the_same_alone_and_in_a_batch(model, tokenizer, prompts):
    params = [
        SamplingParams(max_tokens=10, temperature=0.9, top_p=0.9, seed=1),
        SamplingParams(max_tokens=7, temperature=1.2, top_k=40, seed=2),
        SamplingParams(max_tokens=12, min_p=0.05, repetition_penalty=1.2, seed=3),
        SamplingParams(max_tokens=9, temperature=0),
        SamplingParams(max_tokens=8, temperature=0.9, top_p=0.9, seed=5),
    ]
    alone_ = [engine(model, tokenizer).run([p], q)[0].token_ids for p, q in zip(prompts, params)]
    schedule = {0: [(prompts[0], params[0]), (prompts[1], params[1])], 3: [(prompts[2], params[2])],
                4: [(prompts[3], params[3]), (prompts[4], params[4])]}  # fmt: skip
    events = drive(engine(model, tokenizer, max_batch_size=4), schedule)
    assert [tokens_of(events[i]) for i in range(5)] == alone_
    assert alone_[0] != engine(model, tokenizer).run([prompts[0]], params[0].replace(seed=99))[0].token_ids
    # At batch 1, a seeded request draws what stage 3's generate draws with that seed.
    sampled = SamplingParams(max_tokens=20, temperature=0.8, top_k=30, seed=7)
    for prompt in prompts:
        expected = generate(model, [prompt], 20, temperature=0.8, top_k=30, seed=7)[0]
        assert engine(model, tokenizer).run([prompt], sampled)[0].token_ids == expected


# --- the batch, the queue and the steps ----------------------------------------------------------


def test_newcomers_get_their_first_token_in_the_step_that_admits_them(model, tokenizer, prompts):
    run = engine(model, tokenizer)
    assert run.step() == [] and not run.has_work
    first = run.add(prompts[0], GREEDY)
    assert (run.waiting, run.running, run.has_work) == (1, 0, True)
    [event] = run.step()
    assert (event.request_id, event.token, event.finish_reason) == (first, alone(model, prompts[0], 1)[0], None)
    second = run.add(prompts[1], GREEDY)
    events = run.step()
    assert [e.request_id for e in events] == [first, second] and run.running == 2
    assert [e.token for e in events] == [alone(model, prompts[0], 2)[1], alone(model, prompts[1], 1)[0]]


def test_max_batch_size_caps_the_running_requests_and_the_rest_wait_in_order(model, tokenizer, prompts):
    run = engine(model, tokenizer, max_batch_size=2)
    ids = [run.add(p, GREEDY.replace(max_tokens=n)) for p, n in zip(prompts, [3, 5, 2, 4, 2])]
    admitted = []
    while run.has_work:
        events = run.step()
        admitted += [e.request_id for e in events if e.request_id not in admitted]
        assert run.running <= 2 and len(events) <= 2
    assert admitted == ids  # first come, first served
    first = engine(model, tokenizer, max_batch_size=2)
    for p in prompts:
        first.add(p, GREEDY)
    first.step()
    assert (first.running, first.waiting) == (2, 3)
    one_at_a_time = engine(model, tokenizer, max_batch_size=1).run(prompts[:2], GREEDY)
    assert [c.token_ids for c in one_at_a_time] == [alone(model, p, 12) for p in prompts[:2]]


def test_cancel_a_waiting_and_a_running_request(model, tokenizer, prompts):
    run = engine(model, tokenizer, max_batch_size=2)
    a, b, c = (run.add(p, GREEDY.replace(max_tokens=20)) for p in prompts[:3])
    run.step()
    run.step()
    assert (run.running, run.waiting) == (2, 1)
    assert run.cancel(c) and run.cancel(a)
    events = run.step()
    ended = [(e.request_id, e.token, e.finish_reason) for e in events[:2]]
    assert ended == [(c, None, "cancelled"), (a, None, "cancelled")]  # the waiting one first
    assert [e.request_id for e in events[2:]] == [b] and run.running == 1 and run._cache.batch_size == 1
    rest = [e for _ in range(30) for e in run.step()]
    assert {e.request_id for e in rest} == {b} and tokens_of(events[2:] + rest)[-1] == alone(model, prompts[1], 20)[-1]
    assert not run.cancel(a) and not run.cancel(b)  # already finished: nothing to do
    with pytest.raises(KeyError, match="no request has id 3"):
        run.cancel(3)


def test_cancelling_every_running_request_empties_the_batch(model, tokenizer, prompts):
    run = engine(model, tokenizer)
    first = run.add(prompts[0], GREEDY)
    run.step()
    run.cancel(first)
    second = run.add(prompts[1], GREEDY)
    events = run.step()
    assert [(e.request_id, e.finish_reason) for e in events] == [(first, "cancelled"), (second, None)]
    assert run.running == 1 and run._cache.batch_size == 1


# --- why a request finishes ----------------------------------------------------------------------


def test_an_end_token_stops_and_is_left_out(model, tokenizer, prompts):
    reference = alone(model, prompts[2], 12)
    end = reference[4]
    cut = reference.index(end)
    completion = engine(model, tokenizer, end_tokens=[end]).run([prompts[2]], GREEDY)[0]
    assert completion.token_ids == reference[:cut] and completion.finish_reason == "stop"
    assert completion.text == tokenizer.decode(reference[:cut])
    events = drive(engine(model, tokenizer, end_tokens=[end]), {0: [(prompts[2], GREEDY)]})[0]
    assert (events[-1].token, events[-1].finish_reason) == (end, "stop") and len(events) == cut + 1
    assert engine(model, tokenizer, end_tokens=[reference[0]]).run([prompts[2]], GREEDY)[0].token_ids == []


def test_default_end_tokens_are_the_tokenizers_end_and_endoftext(model, tokenizer):
    expected = {tokenizer.special_id("<|end|>"), tokenizer.special_id("<|endoftext|>")}
    assert Engine(model, tokenizer).end_tokens == expected


def test_max_tokens_gives_length_at_exactly_that_many(model, tokenizer, prompts):
    run = engine(model, tokenizer)
    for n in (1, 2, 5):
        [completion] = run.run([prompts[0]], GREEDY.replace(max_tokens=n))
        assert (len(completion.token_ids), completion.finish_reason) == (n, "length")


def test_a_stop_string_cuts_the_text(model, tokenizer, prompts):
    reference = alone(model, prompts[3], 30)
    text = tokenizer.decode(reference)
    pieces = [tokenizer.decode([t]) for t in reference]
    # A stop string that spans two tokens, taken from the middle of the text.
    start = len("".join(pieces[:10])) - 1
    stop = text[start : start + 3]
    first = text.find(stop)
    params = SamplingParams(max_tokens=30, temperature=0, stop=[stop])
    completion = engine(model, tokenizer).run([prompts[3]], params)[0]
    assert (completion.text, completion.finish_reason) == (text[:first], "stop")
    assert len(completion.token_ids) < 30 and completion.token_ids == reference[: len(completion.token_ids)]
    assert stop in tokenizer.decode(completion.token_ids)  # the tokens run up to the one completing the stop
    assert stop not in tokenizer.decode(completion.token_ids[:-1])


# --- bad input -----------------------------------------------------------------------------------


def test_bad_prompts_raise_with_the_numbers(model, tokenizer):
    run = engine(model, tokenizer)
    vocab, context = model.config.vocab_size, model.config.context
    with pytest.raises(ValueError, match="empty"):
        run.add([], GREEDY)
    for bad in (-1, vocab):
        with pytest.raises(ValueError, match=f"token id {bad} is outside the vocabulary of {vocab}"):
            run.add([1, bad], GREEDY)
    run.add([1] * (context - 12), GREEDY)  # exactly fits
    too_long = f"{context - 11} tokens plus max_tokens=12 exceeds .* {context}.* max_tokens <= 11"
    with pytest.raises(ValueError, match=too_long):
        run.add([1] * (context - 11), GREEDY)
    with pytest.raises(ValueError, match=f"shorten it to at most {context - 1} tokens"):
        run.add([1] * context, GREEDY.replace(max_tokens=1))
    with pytest.raises(TypeError, match="encode the text"):
        run.add("hello", GREEDY)
    with pytest.raises(TypeError, match="SamplingParams"):
        run.add([1], {"max_tokens": 3})
    assert run.waiting == 1
    with pytest.raises(RuntimeError, match="1 requests are already in it"):
        run.run([[1]], GREEDY)


def test_bad_engine_arguments(model, tokenizer):
    with pytest.raises(ValueError, match="max_batch_size=0"):
        Engine(model, tokenizer, max_batch_size=0)
    small = GPT(GPTConfig(vocab_size=tokenizer.vocab_size - 1, context=16, n_layer=1, n_head=1, n_embd=8))
    with pytest.raises(ValueError, match="the tokenizer has 300 ids but the model's vocabulary has 299"):
        Engine(small, tokenizer)
    with pytest.raises(ValueError, match="2 prompts but 3 SamplingParams"):
        engine(model, tokenizer).run([[1], [2]], [GREEDY] * 3)


def test_run_takes_text_and_puts_the_model_in_eval_mode(model, tokenizer, prompts):
    model.train()
    run = engine(model, tokenizer)
    assert not model.training
    [completion] = run.run([SENTENCES[0]], GREEDY)
    assert completion.token_ids == alone(model, prompts[0], 12) and completion.prompt_tokens == len(prompts[0])


# --- BatchCache ----------------------------------------------------------------------------------

CONFIG = GPTConfig(vocab_size=10, context=16, n_layer=2, n_head=2, n_embd=8)


def filled(rows: list[list[bool]], capacity: int = 8, offset: float = 0.0) -> BatchCache:
    """A cache holding rows with the given real/padding pattern; key k of row r, layer l is r*100 + l*10 + k."""
    cache = BatchCache(CONFIG, len(rows), capacity)
    is_real = torch.tensor(rows)
    cache.extend_mask(is_real)
    for layer in range(CONFIG.n_layer):
        k = torch.arange(is_real.size(1)).float().expand(len(rows), 2, -1)
        k = (k + 100 * torch.arange(len(rows))[:, None, None] + 10 * layer + offset)[..., None].expand(-1, -1, -1, 4)
        cache.update(layer, k, -k)
    cache.advance(is_real.size(1))
    return cache


def columns(cache: BatchCache, layer: int = 0) -> torch.Tensor:
    """Row-by-column values of the keys in use (head 0, dimension 0), with padding shown as nan."""
    keys = cache.keys[layer, :, 0, cache.start : cache.start + cache.length, 0]
    return keys.masked_fill(~cache.key_mask[:, : cache.length], float("nan"))


def test_keep_drops_rows_and_trims_leading_padding():
    cache = filled([[False, False, True, True], [False, True, True, True], [True, True, True, True]])
    assert cache.real_lengths.tolist() == [2, 3, 4]
    cache.keep([1, 0])  # the longest row leaves: one column is padding in every row now
    assert (cache.batch_size, cache.start, cache.length, cache.real_lengths.tolist()) == (2, 1, 3, [3, 2])
    nan = float("nan")
    assert torch.equal(columns(cache).nan_to_num(-1), torch.tensor([[101.0, 102, 103], [nan, 2, 3]]).nan_to_num(-1))
    assert torch.equal(cache.values[1, :, 0, 1:4, 0], -torch.tensor([[111.0, 112, 113], [11, 12, 13]]))
    assert cache.trim() == 0  # nothing more to trim
    cache.keep([])
    assert cache.batch_size == 0


def test_append_aligns_the_two_on_the_right():
    running = filled([[True, True], [False, True]])
    newcomers = filled([[False, True, True, True]], offset=0.5)
    running.append(newcomers)  # 4 columns, the first of them padding in every row: trimmed to 3
    assert (running.batch_size, running.start, running.length, running.real_lengths.tolist()) == (3, 1, 3, [2, 1, 3])
    nan = float("nan")
    expected = torch.tensor([[nan, 10, 11], [nan, nan, 111], [11.5, 12.5, 13.5]])
    assert torch.equal(columns(running, layer=1).nan_to_num(-1), expected.nan_to_num(-1))
    # The other way round: the running batch is the longer one, and the newcomer is padded.
    longer = filled([[True, True, True]])
    longer.append(filled([[True]], offset=0.5))
    assert longer.key_mask[:, :3].tolist() == [[True, True, True], [False, False, True]]
    empty = BatchCache(CONFIG, 0, 4)
    empty.append(filled([[True, True]]))
    assert (empty.batch_size, empty.length) == (1, 2)


def test_storage_grows_and_moves_to_the_front_when_needed():
    cache = filled([[True, True, True]], capacity=4)
    cache.extend_mask(torch.ones(1, 2, dtype=torch.bool))  # 5 columns do not fit in 4: double
    assert (cache.max_length, cache.start) == (8, 0)
    assert cache.keys.shape[3] == 8 and cache.keys[0, 0, 0, :3, 0].tolist() == [0, 1, 2]
    cache = filled([[False, False, True], [False, True, True]], capacity=4)
    cache.keep([0])  # start moves to 2: one free column at the end
    assert (cache.start, cache.length, cache.max_length) == (2, 1, 4)
    cache.extend_mask(torch.ones(1, 2, dtype=torch.bool))  # fits once moved to the front: no growth
    assert (cache.start, cache.max_length) == (0, 4) and cache.keys[0, 0, 0, 0, 0] == 2
    big = filled([[True] * 12], capacity=12)
    big.extend_mask(torch.ones(1, 1, dtype=torch.bool))
    assert big.max_length == CONFIG.context  # doubling stops at the context
    with pytest.raises(ValueError, match="exceeds the model's context of 16"):
        BatchCache(CONFIG, 1, 17)


def test_batch_cache_gives_the_logits_of_kv_cache_in_gpt_forward():
    model = GPT(GPTConfig(vocab_size=20, context=24, n_layer=2, n_head=2, n_embd=16), seed=1).eval()
    idx = torch.randint(20, (3, 6), generator=torch.Generator().manual_seed(0))
    padding = torch.ones(3, 6, dtype=torch.bool)
    padding[1, :2] = padding[2, :4] = False
    ours, theirs = BatchCache(model.config, 3, 8), KVCache(model.config, 3, 12)
    with torch.no_grad():
        for step in range(4):
            a, _ = model(idx, padding_mask=padding if step == 0 else None, cache=ours)
            b, _ = model(idx, padding_mask=padding if step == 0 else None, cache=theirs)
            assert torch.equal(a, b), step
            idx = a[:, -1:].argmax(dim=-1)
    assert ours.max_length == 16 and ours.real_lengths.tolist() == [9, 7, 5]
