"""The OpenAI-compatible server, spoken to as its users speak to it: the real `openai` client for what it sends,
httpx and raw sockets for what it would never send (bad JSON, huge or slow bodies, a client that leaves).

Every answer is compared with the engine's own on the same prompt (equal, not similar); every limit is tested at,
just under and just over its value. Tests that need requests to pile up hold the engine thread at a `Gate`
(its steps wait until the test lets them go), so they do not depend on timing. Also: the terminal chat with
scripted input, `chat_model`'s choice of model from a hand-made cache, and the two commands' mistakes.
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
import torch

from minilm.cache import run_dir
from minilm.finetune.chat import encode_chat
from minilm.infer import server as server_module
from minilm.infer.engine import Engine
from minilm.infer.models import ModelNotFoundError, chat_model, end_tokens
from minilm.infer.sampling import SamplingParams
from minilm.infer.server import ServerLimits, create_app, running_server
from minilm.infer.terminal import chat_loop, fit_conversation
from minilm.model import GPT, GPTConfig
from minilm.tokenizer import Tokenizer

from tiny_chat import tiny_chat_model

openai = pytest.importorskip("openai", reason="openai is in requirements.txt: pip install -r requirements.txt")

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL = "minilm-chat"
CONTEXT = 128
PAIRS = [("What is the cat called?", "The cat is called Tom, and Tom likes warm milk."),
         ("Where does Mia live?", "Mia lives in a small house near the park."),
         ("What color is the kite?", "The kite is red, and it flies high in the wind."),
         ("Who is Max?", "Max is a dog who runs in circles and barks.")]
QUESTION = [{"role": "user", "content": PAIRS[0][0]}]
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train([q + " " + a for q, a in PAIRS] * 20, 300)


@pytest.fixture(scope="module")
def model(tokenizer) -> GPT:
    """A tiny chat model trained for 100 steps on four conversations (3 s): it answers in words, and stops. (60 steps
    were not enough on every CPU: on one the loss was still 0.47 and the model answered "The cat called T T Tom";
    100 steps took it under 0.01 there.)"""
    conversations = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in PAIRS]
    model, loss = tiny_chat_model(tokenizer, conversations, lr=1e-2, width=64, steps=100)
    assert loss < 0.05, f"the tiny chat model did not learn its four answers (loss {loss:.3f}): train it longer"
    return model


@pytest.fixture(scope="module")
def served(model, tokenizer):
    """One server with the default limits, for the tests that do not change the engine: (url, app)."""
    app = create_app(model, tokenizer)
    with running_server(app) as url:
        yield url, app


def client(url: str):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)


def chat_ids(tokenizer, messages) -> list[int]:
    return encode_chat(tokenizer, messages, add_generation_prompt=True)[0]


def completion_ids(tokenizer, text: str) -> list[int]:
    return [tokenizer.special_id("<|endoftext|>"), *tokenizer.encode_ordinary(text)]


def reference(model, tokenizer, prompt_ids, **params):
    """What the engine alone writes for the prompt: the answer the server must give."""
    engine = Engine(model, tokenizer, max_batch_size=1, end_tokens=end_tokens(tokenizer))
    return engine.run([prompt_ids], SamplingParams(**params))[0]


def post(url: str, path: str, body, headers=JSON, **kwargs) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{url}{path}", content=content, headers=headers, timeout=30, **kwargs)


def error_of(response: httpx.Response) -> dict:
    """OpenAI's error body, checked for its shape: {"error": {"message", "type", "param", "code"}}."""
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


class Gate:
    """Stands in for `engine.step` in the engine thread: each step waits until the test allows it, so requests
    can be made to pile up (or a generation to stall) without depending on timing."""

    def __init__(self, engine: Engine):
        self.step_for_real = engine.step
        self.allowed = threading.Semaphore(0)
        self.steps = 0

    def __call__(self):
        if not self.allowed.acquire(timeout=20):
            raise RuntimeError("the test never opened the gate")
        self.steps += 1
        return self.step_for_real()

    def allow(self, steps: int = 1) -> None:
        self.allowed.release(steps)

    def open(self) -> None:
        self.allow(100_000)


def wait_until(condition, timeout: float = 10.0) -> None:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


@pytest.fixture
def gated(model, tokenizer, monkeypatch):
    """A fresh server whose engine steps only when the test says; `gated(limits)` -> (url, app, gate)."""
    stack = []

    def start(limits: ServerLimits = ServerLimits()):
        app = create_app(model, tokenizer, limits=limits)
        gate = Gate(app.state.batcher.engine)
        monkeypatch.setattr(app.state.batcher.engine, "step", gate)
        context = running_server(app)
        url = context.__enter__()
        stack.append((context, gate))
        return url, app, gate

    yield start
    for context, gate in reversed(stack):
        gate.open()
        context.__exit__(None, None, None)


def idle(app) -> bool:
    batcher = app.state.batcher
    return batcher.active == 0 and not batcher.engine.has_work and batcher.engine.running == 0


# ---------------------------------------------------------------------------------------------
# Answers: equal to the engine's, whole or streamed


def test_chat_completion_is_the_engines_answer_with_openais_fields(served, model, tokenizer):
    url, _ = served
    answer = client(url).chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=40)
    expected = reference(model, tokenizer, chat_ids(tokenizer, QUESTION), temperature=0, max_tokens=40)
    assert expected.text.startswith("The cat is called Tom") and expected.finish_reason == "stop"
    assert answer.object == "chat.completion" and answer.model == MODEL and answer.id.startswith("chatcmpl-")
    assert abs(answer.created - time.time()) < 60
    assert len(answer.choices) == 1 and answer.choices[0].index == 0
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == expected.text
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.prompt_tokens == len(chat_ids(tokenizer, QUESTION)) == expected.prompt_tokens
    assert answer.usage.completion_tokens == len(expected.token_ids)  # the end token is not counted
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_a_conversation_of_several_turns_is_sent_whole(served, model, tokenizer):
    url, _ = served
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": PAIRS[1][0]},
                {"role": "assistant", "content": PAIRS[1][1]}, {"role": "user", "content": PAIRS[2][0]}]
    answer = client(url).chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=30)
    expected = reference(model, tokenizer, chat_ids(tokenizer, messages), temperature=0, max_tokens=30)
    assert answer.choices[0].message.content == expected.text
    assert answer.usage.prompt_tokens == len(chat_ids(tokenizer, messages))


def test_text_completion_continues_the_prompt_after_endoftext(served, model, tokenizer):
    url, _ = served
    answer = client(url).completions.create(model=MODEL, prompt="The kite", temperature=0, max_tokens=12)
    expected = reference(model, tokenizer, completion_ids(tokenizer, "The kite"), temperature=0, max_tokens=12)
    assert answer.object == "text_completion" and answer.id.startswith("cmpl-")
    assert answer.choices[0].text == expected.text and answer.choices[0].finish_reason == expected.finish_reason
    assert answer.usage.prompt_tokens == len(completion_ids(tokenizer, "The kite"))
    assert answer.usage.completion_tokens == len(expected.token_ids)


def test_max_tokens_cuts_the_answer_with_finish_reason_length(served, model, tokenizer):
    url, _ = served
    for name in ("max_tokens", "max_completion_tokens"):
        answer = client(url).chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, **{name: 3})
        expected = reference(model, tokenizer, chat_ids(tokenizer, QUESTION), temperature=0, max_tokens=3)
        assert answer.choices[0].message.content == expected.text and answer.choices[0].finish_reason == "length"
        assert answer.usage.completion_tokens == 3


def test_stop_strings_a_string_or_a_list(served, model, tokenizer):
    url, _ = served
    for stop in (",", [",", "zzz"]):
        answer = client(url).chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=40,
                                                     stop=stop)
        assert answer.choices[0].message.content == "The cat is called Tom"
        assert answer.choices[0].finish_reason == "stop"


def test_sampling_with_a_seed_is_the_engines_and_repeatable(served, model, tokenizer):
    url, _ = served
    settings = {"temperature": 1.0, "top_p": 0.9, "seed": 7, "max_tokens": 20}
    extra = {"top_k": 50, "min_p": 0.05, "repetition_penalty": 1.2}
    answers = [client(url).chat.completions.create(model=MODEL, messages=QUESTION, extra_body=extra, **settings)
               for _ in range(2)]
    expected = reference(model, tokenizer, chat_ids(tokenizer, QUESTION), **settings, **extra)
    assert answers[0].choices[0].message.content == answers[1].choices[0].message.content == expected.text


def test_streamed_text_equals_the_whole_answer(served, model, tokenizer):
    url, _ = served
    whole = client(url).chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=40)
    chunks = list(client(url).chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=40,
                                                      stream=True))
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    assert len(chunks) > 4  # the text came in pieces
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content

    whole = client(url).completions.create(model=MODEL, prompt="The kite", temperature=0, max_tokens=12)
    pieces = list(client(url).completions.create(model=MODEL, prompt="The kite", temperature=0, max_tokens=12,
                                                 stream=True))
    assert "".join(p.choices[0].text for p in pieces) == whole.choices[0].text
    assert pieces[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_a_stream_with_include_usage_ends_with_the_token_counts(served):
    url, _ = served
    whole = client(url).chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=30)
    chunks = list(client(url).chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=30,
                                                      stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == {
        **whole.usage.model_dump(), "completion_tokens_details": None, "prompt_tokens_details": None}
    assert all(c.usage is None for c in chunks[:-1])
    plain = list(client(url).chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=30,
                                                     stream=True, stream_options={"include_usage": False}))
    assert all(c.usage is None for c in plain) and len(plain) == len(chunks) - 1
    response = httpx.post(f"{url}/v1/chat/completions", json={"model": MODEL, "messages": QUESTION, "stream": True,
                                                              "stream_options": {"include_usage": True, "x": 1}})
    assert response.status_code == 400 and "stream_options" in response.json()["error"]["message"]


def test_the_stream_is_server_sent_events_ending_with_done(served):
    url, _ = served
    body = {"model": MODEL, "messages": QUESTION, "temperature": 0, "max_tokens": 5, "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = raw.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(event.startswith("data: {") and "\n" not in event for event in events[:-2])
    assert [json.loads(e[6:])["choices"][0]["finish_reason"] for e in events[:-2]][-1] == "length"


def test_models_health_and_the_chat_page(served):
    url, _ = served
    assert [m.id for m in client(url).models.list()] == [MODEL]
    assert client(url).models.retrieve(MODEL).id == MODEL
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["model"] == MODEL
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="prompt"' in page.text and 'id="send"' in page.text and "/v1/chat/completions" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from elsewhere: works offline


# ---------------------------------------------------------------------------------------------
# Mistakes: OpenAI's error body, a message that names the fix


def test_an_unknown_model_is_404_model_not_found(served):
    url, _ = served
    with pytest.raises(openai.NotFoundError) as caught:
        client(url).chat.completions.create(model="gpt-4", messages=QUESTION)
    error = caught.value.body
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert error["message"] == ("the model 'gpt-4' does not exist: this server serves 'minilm-chat' "
                                "(GET /v1/models lists it)")
    with pytest.raises(openai.NotFoundError):
        client(url).models.retrieve("gpt-4")


@pytest.mark.parametrize("n, status", [(1, 200), (2, 400)])
def test_only_one_answer_per_request(served, n, status):
    url, _ = served
    response = post(url, "/v1/chat/completions", {"model": MODEL, "messages": QUESTION, "n": n, "max_tokens": 2})
    assert response.status_code == status
    if status == 400:
        assert error_of(response)["message"] == ("n=2: this server writes one answer per request; ask for n=1 and "
                                                 "send 2 requests instead")


def test_bad_request_error_through_the_openai_client(served):
    url, _ = served
    with pytest.raises(openai.BadRequestError) as caught:
        client(url).chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=-3)
    assert caught.value.body["message"] == "max_tokens=-3 must be at least 1"
    assert caught.value.body["param"] == "max_tokens" and caught.value.body["type"] == "invalid_request_error"


@pytest.mark.parametrize("field, value, message", [
    ("temperature", -0.5, "temperature=-0.5 must be a finite number >= 0 (0 means greedy)"),
    ("temperature", "hot", "temperature='hot': input should be a valid number"),
    ("top_p", 0, "top_p=0.0 must be in (0, 1] (1 keeps every token), or None"),
    ("top_k", 0, "top_k=0 must be an integer of at least 1"),
    ("max_tokens", 2.5, "max_tokens=2.5: input should be a valid integer"),
    ("stream", "yes", "stream='yes': input should be a valid boolean"),
    ("stop", [""], "stop string '' must be a non-empty string of at most 64 characters"),
    ("seed", -1, "seed=-1 must be a non-negative integer (or None for a random one)"),
    ("messages", [{"role": "robot", "content": "hi"}], "message 0 has the unknown role 'robot'; the roles are "
                                                       "['system', 'user', 'assistant']"),
    ("messages", [{"role": "user", "content": "say <|end|>"}], "message 0 (user) contains the special-token text "
     "'<|end|>' at character 4: special tokens are control signals the format writes itself; remove that text from "
     "the message"),
])
def test_a_bad_field_is_400_naming_it(served, field, value, message):
    url, _ = served
    response = post(url, "/v1/chat/completions", {"model": MODEL, "messages": QUESTION, field: value})
    assert response.status_code == 400
    error = error_of(response)
    assert error["message"] == message and error["type"] == "invalid_request_error"
    assert error["param"] in (field, None)


def test_unknown_and_missing_fields_are_400(served):
    url, _ = served
    response = post(url, "/v1/chat/completions", {"model": MODEL, "messages": QUESTION, "logprobs": True})
    error = error_of(response)
    assert response.status_code == 400 and error["param"] == "logprobs" and error["code"] == "unknown_parameter"
    assert error["message"].startswith("unknown field 'logprobs': this server takes max_completion_tokens, max_tokens, "
                                       "messages, min_p, model,")
    response = post(url, "/v1/completions", {"model": MODEL})
    assert response.status_code == 400
    assert error_of(response)["message"] == "the request has no 'prompt', which is required"


@pytest.mark.parametrize("body, message", [
    (b'{"model": "minilm-chat", "messages": [}', "the body is not valid JSON (Expecting value: line 1 column 39 "
                                                 "(char 38)): send one JSON object"),
    (b'{"model": "minilm-chat", "prompt": "x", "temperature": NaN}', "the body is not valid JSON (NaN is not a JSON "
                                                                     "number): send one JSON object"),
    (b'\xff\xfe', "the body is not valid JSON"),
    (b'["a list"]', "the body must be a JSON object {...}, got a list"),
    (b'', "the body is not valid JSON (Expecting value: line 1 column 1 (char 0)): send one JSON object"),
])
def test_malformed_json_is_400(served, body, message):
    url, _ = served
    response = post(url, "/v1/completions", body)
    assert response.status_code == 400 and error_of(response)["message"].startswith(message)


@pytest.mark.parametrize("content_type, status", [("application/json", 200), ("application/json; charset=utf-8", 200),
                                                  ("text/plain", 415), (None, 415)])
def test_only_json_bodies_are_read(served, content_type, status):
    url, _ = served
    headers = {"Content-Type": content_type} if content_type else {}
    response = post(url, "/v1/completions", {"model": MODEL, "prompt": "The", "max_tokens": 1}, headers=headers)
    assert response.status_code == status
    if status == 415:
        assert error_of(response)["message"].startswith("the body must be JSON, sent with the header Content-Type: "
                                                        "application/json")


@pytest.mark.parametrize("count, status", [(4, 200), (5, 400)])
def test_at_most_four_stop_strings(served, count, status):
    url, _ = served
    stop = [f"s{i}" for i in range(count)]
    response = post(url, "/v1/completions", {"model": MODEL, "prompt": "The", "max_tokens": 2, "stop": stop})
    assert response.status_code == status
    if status == 400:
        assert error_of(response) == {"message": "stop has 5 strings; at most 4 are allowed",
                                      "type": "invalid_request_error", "param": "stop", "code": None}


def test_max_tokens_at_and_over_the_room_the_prompt_leaves(served, tokenizer):
    """The prompt's tokens and max_tokens may fill the context exactly, not one token more; max_tokens is at
    least 1 and at most the context."""
    url, _ = served
    prompt_tokens = len(chat_ids(tokenizer, QUESTION))
    room = CONTEXT - prompt_tokens

    def ask(max_tokens):
        return post(url, "/v1/chat/completions", {"model": MODEL, "messages": QUESTION, "max_tokens": max_tokens,
                                                  "temperature": 0})

    assert ask(room).status_code == 200 and ask(1).status_code == 200
    over = ask(room + 1)
    assert over.status_code == 400 and error_of(over) == {
        "message": f"the prompt's {prompt_tokens} tokens and max_tokens={room + 1} add up to {CONTEXT + 1}, more than "
                   f"the model's context of {CONTEXT} tokens: ask for at most {room}, or shorten the prompt",
        "type": "invalid_request_error", "param": "max_tokens", "code": "context_length_exceeded"}
    assert error_of(ask(0))["message"] == "max_tokens=0 must be at least 1"
    assert error_of(ask(-3))["message"] == "max_tokens=-3 must be at least 1"
    assert error_of(ask(CONTEXT + 1))["message"] == (f"max_tokens={CONTEXT + 1} is more than this server allows: at "
                                                     f"most {CONTEXT} tokens (the model's context)")
    assert error_of(ask(10**12))["param"] == "max_tokens"


def prompt_of(tokenizer, tokens: int) -> str:
    """A text whose completion prompt (<|endoftext|> and the text) is exactly `tokens` tokens."""
    words = 1
    while len(completion_ids(tokenizer, " cat" * words)) < tokens:
        words += 1
    text = " cat" * words
    assert len(completion_ids(tokenizer, text)) == tokens
    return text


def test_a_prompt_longer_than_the_context_is_400_with_the_numbers(served, model, tokenizer):
    url, _ = served
    fits = post(url, "/v1/completions", {"model": MODEL, "prompt": prompt_of(tokenizer, CONTEXT - 1), "temperature": 0})
    assert fits.status_code == 200 and fits.json()["usage"]["completion_tokens"] <= 1  # the room left: one token
    for tokens in (CONTEXT, CONTEXT + 1):
        response = post(url, "/v1/completions", {"model": MODEL, "prompt": prompt_of(tokenizer, tokens)})
        assert response.status_code == 400 and error_of(response) == {
            "message": f"the prompt is {tokens} tokens, and the model's context is {CONTEXT}: no room is left for an "
                       f"answer; shorten the prompt to at most {CONTEXT - 1} tokens",
            "type": "invalid_request_error", "param": "prompt", "code": "context_length_exceeded"}


def test_a_smaller_max_tokens_limit_is_the_default_and_the_ceiling(model, tokenizer):
    app = create_app(model, tokenizer, limits=ServerLimits(max_tokens=5))
    with running_server(app) as url:
        answer = client(url).completions.create(model=MODEL, prompt="The kite", temperature=0)
        expected = reference(model, tokenizer, completion_ids(tokenizer, "The kite"), temperature=0, max_tokens=5)
        assert answer.choices[0].text == expected.text and answer.usage.completion_tokens == 5
        assert post(url, "/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 5}).status_code == 200
        over = post(url, "/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 6})
        assert error_of(over)["message"] == ("max_tokens=6 is more than this server allows: at most 5 tokens "
                                             "(ServerLimits.max_tokens)")


def test_unknown_routes_methods_and_fastapis_validation_errors_get_openais_body(served):
    url, app = served
    response = httpx.get(f"{url}/v1/nothing")
    assert response.status_code == 404 and error_of(response)["message"] == "GET /v1/nothing: Not Found"
    response = httpx.get(f"{url}/v1/chat/completions")
    assert response.status_code == 405 and error_of(response)["message"].startswith("GET /v1/chat/completions:")

    @app.get("/probe")  # a route with a typed parameter: FastAPI's own 422 becomes OpenAI's 400
    async def probe(count: int):
        return {"count": count}

    assert httpx.get(f"{url}/probe", params={"count": 3}).json() == {"count": 3}
    response = httpx.get(f"{url}/probe", params={"count": "three"})
    assert response.status_code == 400 and error_of(response)["param"] == "count"
    assert error_of(response)["message"] == ("count='three': input should be a valid integer, unable to parse string "
                                             "as an integer")


def test_a_failure_inside_a_request_is_500_and_the_server_goes_on(served, monkeypatch):
    url, _ = served

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(server_module, "encode_chat", broken)
    response = post(url, "/v1/chat/completions", {"model": MODEL, "messages": QUESTION})
    assert response.status_code == 500 and error_of(response)["type"] == "server_error"
    assert "RuntimeError('a bug')" in error_of(response)["message"]
    monkeypatch.undo()
    assert post(url, "/v1/chat/completions", {"model": MODEL, "messages": QUESTION, "max_tokens": 2}).status_code == 200


# ---------------------------------------------------------------------------------------------
# Limits: body size, slow clients, overload, time


def json_body(size: int) -> bytes:
    """A valid completion request of exactly `size` bytes (JSON allows trailing spaces)."""
    body = json.dumps({"model": MODEL, "prompt": "The", "max_tokens": 1}).encode()
    return body + b" " * (size - len(body))


def test_a_body_over_the_limit_is_413(model, tokenizer):
    app = create_app(model, tokenizer, limits=ServerLimits(max_body_bytes=1000))
    with running_server(app) as url:
        assert post(url, "/v1/completions", json_body(1000)).status_code == 200
        response = post(url, "/v1/completions", json_body(1001))
        assert response.status_code == 413 and error_of(response)["code"] == "request_too_large"
        assert error_of(response)["message"] == ("the request body is 1,001 bytes or more, over this server's limit "
                                                 "of 1,000 bytes (ServerLimits.max_body_bytes): send a shorter "
                                                 "conversation")

        def pieces(body):  # no Content-Length: sent chunked, counted as it arrives
            yield from (body[i:i + 100] for i in range(0, len(body), 100))

        chunked = httpx.post(f"{url}/v1/completions", content=pieces(json_body(1001)), headers=JSON)
        assert chunked.status_code == 413
        assert httpx.post(f"{url}/v1/completions", content=pieces(json_body(1000)), headers=JSON).status_code == 200


def test_the_default_body_limit_is_one_mebibyte(served):
    url, _ = served
    response = post(url, "/v1/completions", json_body(2**20 + 1))
    assert response.status_code == 413 and "limit of 1,048,576 bytes" in error_of(response)["message"]


def raw_exchange(url: str, body: bytes, pause: float) -> tuple[bytes, float]:
    """Send the headers, then the body one byte every `pause` seconds until the server answers (or the body
    ends); return the response and the seconds it took."""
    address = urlparse(url)
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: {address.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    started = time.monotonic()
    response = b""
    with socket.create_connection((address.hostname, address.port), timeout=20) as sock:
        sock.sendall(head)
        for byte in body:
            if select.select([sock], [], [], pause)[0]:
                break  # the server answered before the body was complete
            sock.sendall(bytes([byte]))
        try:
            while chunk := sock.recv(65536):  # until the server closes the connection
                response += chunk
        except ConnectionResetError:
            pass
    return response, time.monotonic() - started


def test_a_client_that_sends_its_body_too_slowly_gets_408(model, tokenizer):
    app = create_app(model, tokenizer, limits=ServerLimits(body_timeout=0.5))
    with running_server(app) as url:
        body = json_body(200)
        response, seconds = raw_exchange(url, body, pause=0.05)  # 200 bytes at 20 a second would take 10 s
        assert response.startswith(b"HTTP/1.1 408 ") and b"request_timeout" in response
        assert b"the request body took longer than 0.5 s to arrive" in response
        assert 0.5 <= seconds < 5
        response, seconds = raw_exchange(url, json_body(64), pause=0)  # at once: in time
        assert response.startswith(b"HTTP/1.1 200 ")
        assert client(url).completions.create(model=MODEL, prompt="The", max_tokens=1).choices  # still serving


@pytest.mark.parametrize("max_queue", [1, 2])
def test_requests_beyond_the_queue_get_429_and_the_server_answers_afterwards(gated, max_queue):
    url, app, gate = gated(ServerLimits(max_batch_size=1, max_queue=max_queue))
    body = {"model": MODEL, "messages": QUESTION, "temperature": 0, "max_tokens": 5}
    with ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(post, url, "/v1/chat/completions", body) for _ in range(5)]
        wait_until(lambda: sum(f.done() for f in futures) == 5 - max_queue)  # the refused answer at once
        refused = [f.result() for f in futures if f.done()]
        assert app.state.batcher.waiting == max_queue
        gate.open()
        statuses = Counter(f.result().status_code for f in futures)
    assert statuses == {200: max_queue, 429: 5 - max_queue}
    for response in refused:
        assert response.status_code == 429 and response.headers["retry-after"] == "1"
        assert error_of(response) == {
            "message": f"the server is busy: {max_queue} requests are already waiting for the model "
                       f"(ServerLimits.max_queue={max_queue}); try again in 1 s",
            "type": "rate_limit_error", "param": None, "code": "rate_limit_exceeded"}
    assert post(url, "/v1/chat/completions", body).status_code == 200


def test_the_openai_client_reads_429_as_a_rate_limit(gated):
    url, app, gate = gated(ServerLimits(max_queue=1))
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(post, url, "/v1/completions", {"model": MODEL, "prompt": "The", "max_tokens": 2})
        wait_until(lambda: app.state.batcher.waiting == 1)
        with pytest.raises(openai.RateLimitError) as caught:
            client(url).completions.create(model=MODEL, prompt="The", max_tokens=2)
        assert caught.value.body["code"] == "rate_limit_exceeded"
        gate.open()
        assert waiting.result().status_code == 200


def test_concurrent_requests_are_batched_and_answered_as_alone(gated, served, tokenizer):
    """Eight greedy requests at once give exactly the answers each gets alone, and the engine did run them
    together: one step advanced all eight."""
    alone_url, _ = served
    prompts = [[{"role": "user", "content": q}] for q, _ in PAIRS] + [
        [{"role": "user", "content": q + " Please."}] for q, _ in PAIRS]
    alone = [client(alone_url).chat.completions.create(model=MODEL, messages=p, temperature=0, max_tokens=30)
             .choices[0].message.content for p in prompts]
    url, app, gate = gated(ServerLimits(max_batch_size=8))
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client(url).chat.completions.create, model=MODEL, messages=p, temperature=0,
                               max_tokens=30) for p in prompts]
        wait_until(lambda: app.state.batcher.waiting == 8)
        gate.open()
        together = [f.result().choices[0].message.content for f in futures]
    assert together == alone
    assert len(set(alone)) > 1
    assert max(app.state.batcher.batch_sizes) == 8


def test_requests_join_the_running_batch_between_steps(gated, model, tokenizer):
    """Dynamic batching: a request that arrives while another runs joins its batch at the next step."""
    url, app, gate = gated()
    first = {"model": MODEL, "prompt": "The kite", "temperature": 0, "max_tokens": 20}
    second = {"model": MODEL, "messages": QUESTION, "temperature": 0, "max_tokens": 20}
    with ThreadPoolExecutor(2) as pool:
        one = pool.submit(post, url, "/v1/completions", first)
        wait_until(lambda: app.state.batcher.waiting == 1)
        gate.allow(2)
        wait_until(lambda: gate.steps == 2 and app.state.batcher.waiting == 0)
        two = pool.submit(post, url, "/v1/chat/completions", second)
        wait_until(lambda: app.state.batcher.waiting == 1)
        gate.open()
        answers = one.result().json(), two.result().json()
    assert app.state.batcher.batch_sizes[2] >= 1
    assert answers[0]["choices"][0]["text"] == reference(model, tokenizer, completion_ids(tokenizer, "The kite"),
                                                         temperature=0, max_tokens=20).text
    assert answers[1]["choices"][0]["message"]["content"] == reference(model, tokenizer, chat_ids(tokenizer, QUESTION),
                                                                       temperature=0, max_tokens=20).text


def send_raw(url: str, path: str, body: dict) -> socket.socket:
    address = urlparse(url)
    data = json.dumps(body).encode()
    sock = socket.create_connection((address.hostname, address.port), timeout=20)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {address.netloc}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def cancel_sent(app) -> bool:
    """Whether the server has sent the engine thread a cancel: it waits in the inbox, or was taken already."""
    return app.state.batcher.inbox.qsize() == 1 or app.state.batcher.finished["cancelled"] == 1


def test_a_client_that_leaves_mid_stream_cancels_its_request(gated):
    url, app, gate = gated()
    sock = send_raw(url, "/v1/chat/completions", {"model": MODEL, "messages": QUESTION, "temperature": 0,
                                                  "max_tokens": 60, "stream": True})
    received, granted = b"", 0
    while not re.search(rb'"content": "[^"]', received):  # a step at a time, until the first words arrive
        if select.select([sock], [], [], 0.05)[0]:
            received += sock.recv(65536)
        elif gate.steps == granted:
            gate.allow(1)
            granted += 1
    assert b"[DONE]" not in received
    sock.close()
    wait_until(lambda: cancel_sent(app))
    gate.open()
    wait_until(lambda: idle(app))
    assert app.state.batcher.finished == {"cancelled": 1}
    assert gate.steps < 10


def test_a_client_that_leaves_before_a_whole_answer_cancels_its_request(gated):
    url, app, gate = gated()
    sock = send_raw(url, "/v1/chat/completions", {"model": MODEL, "messages": QUESTION, "max_tokens": 60})
    wait_until(lambda: app.state.batcher.waiting == 1)
    sock.close()
    wait_until(lambda: cancel_sent(app))
    gate.open()
    wait_until(lambda: idle(app))
    assert app.state.batcher.finished == {"cancelled": 1} and gate.steps <= 2


def test_a_generation_past_the_request_timeout_is_stopped(gated):
    url, app, gate = gated(ServerLimits(request_timeout=0.5))
    started = time.monotonic()
    response = post(url, "/v1/chat/completions", {"model": MODEL, "messages": QUESTION, "max_tokens": 60})
    assert 0.5 <= time.monotonic() - started < 5
    assert response.status_code == 504 and error_of(response)["code"] == "request_timeout"
    assert error_of(response)["message"].startswith("the answer took longer than this server's limit")
    body = {"model": MODEL, "messages": QUESTION, "max_tokens": 60, "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as streamed:
        events = streamed.read().decode().split("\n\n")
    assert json.loads(events[1][6:])["error"]["code"] == "request_timeout" and events[2] == "data: [DONE]"
    gate.open()
    wait_until(lambda: idle(app))
    assert app.state.batcher.finished == {"cancelled": 2}


def test_a_dead_engine_thread_is_503_for_everyone(model, tokenizer, monkeypatch):
    app = create_app(model, tokenizer)

    def broken_step():
        raise RuntimeError("out of memory")

    monkeypatch.setattr(app.state.batcher.engine, "step", broken_step)
    with running_server(app) as url:
        for _ in range(2):  # the request that met the failure, and one after it
            response = post(url, "/v1/chat/completions", {"model": MODEL, "messages": QUESTION})
            assert response.status_code == 503 and response.headers["retry-after"] == "1"
            assert error_of(response)["message"] == ("the model's engine stopped after an error (RuntimeError('out of "
                                                     "memory')): restart the server")
        assert httpx.get(f"{url}/health").status_code == 503


def test_after_shutdown_the_engine_thread_is_gone(model, tokenizer):
    app = create_app(model, tokenizer)
    with running_server(app) as url:
        assert httpx.get(f"{url}/health").status_code == 200
        thread = app.state.batcher.thread
    assert not thread.is_alive() and app.state.batcher.closing


def test_server_limits_refuse_nonsense():
    with pytest.raises(ValueError, match=r"ServerLimits.max_queue=0 must be an integer of at least 1"):
        ServerLimits(max_queue=0)
    with pytest.raises(ValueError, match=r"ServerLimits.body_timeout=0 must be a number of seconds > 0"):
        ServerLimits(body_timeout=0)
    with pytest.raises(ValueError, match=r"ServerLimits.max_tokens=0 must be an integer of at least 1, or None"):
        ServerLimits(max_tokens=0)
    assert ServerLimits(max_queue=1, body_timeout=0.01, max_tokens=1).max_queue == 1


# ---------------------------------------------------------------------------------------------
# The terminal chat


class Script:
    """`read` answers with the lines given, then raises EOFError (as `input` does at the end of input)."""

    def __init__(self, *lines):
        self.lines, self.prompts, self.written = list(lines), [], []

    def read(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if not self.lines:
            raise EOFError
        line = self.lines.pop(0)
        if isinstance(line, BaseException):
            raise line
        return line

    def write(self, text: str) -> None:
        self.written.append(text)

    @property
    def text(self) -> str:
        return "".join(self.written)


def test_the_terminal_chat_streams_answers_and_keeps_the_conversation(model, tokenizer):
    script = Script(PAIRS[0][0], "", PAIRS[1][0])
    conversation = chat_loop(model, tokenizer, script.read, script.write, temperature=0, max_tokens=30)
    first = reference(model, tokenizer, chat_ids(tokenizer, QUESTION), temperature=0, max_tokens=30).text
    asked = [*QUESTION, {"role": "assistant", "content": first}, {"role": "user", "content": PAIRS[1][0]}]
    second = reference(model, tokenizer, chat_ids(tokenizer, asked), temperature=0, max_tokens=30).text
    assert conversation == [*asked, {"role": "assistant", "content": second}]
    assert f"model> {first}\n" in script.text and f"model> {second}\n" in script.text
    assert script.written.count("model> ") == 2 and len(script.written) > 10  # token by token
    assert script.prompts == ["you> "] * 4 and script.text.endswith("\n")


def test_the_terminal_chat_commands(model, tokenizer):
    script = Script(PAIRS[0][0], "/reset", "/help", PAIRS[2][0], "/quit", "never read")
    conversation = chat_loop(model, tokenizer, script.read, script.write, temperature=0, max_tokens=20)
    assert [m["content"] for m in conversation if m["role"] == "user"] == [PAIRS[2][0]]
    assert "(a new conversation)\n" in script.text
    assert "(unknown command /help: /reset starts a new conversation, /quit (or Ctrl-D) ends)\n" in script.text
    assert script.lines == ["never read"]
    assert chat_loop(model, tokenizer, Script(KeyboardInterrupt()).read, script.write) == []  # Ctrl-C at the prompt


def test_the_terminal_chat_drops_the_oldest_exchanges_to_fit_the_context(model, tokenizer):
    max_tokens = 60  # leaves 68 tokens of the 128 for the conversation: two short exchanges
    script = Script(*(q for q, _ in PAIRS))
    conversation = chat_loop(model, tokenizer, script.read, script.write, temperature=0, max_tokens=max_tokens)
    notes = re.findall(r"\(dropped the oldest (\d) (exchanges?) to fit the model's context of 128 tokens\)\n",
                       script.text)
    assert notes and all((n == "1") == (word == "exchange") for n, word in notes)  # 1 exchange, 2 exchanges
    assert conversation[-2]["content"] == PAIRS[-1][0] and conversation[0]["content"] != PAIRS[0][0]
    assert len(chat_ids(tokenizer, conversation[:-1])) <= CONTEXT - max_tokens


def test_fit_conversation_drops_exchanges_only_when_over_the_limit(tokenizer):
    messages = [*QUESTION, {"role": "assistant", "content": "Tom."}, {"role": "user", "content": PAIRS[1][0]}]
    whole, last = len(chat_ids(tokenizer, messages)), len(chat_ids(tokenizer, messages[2:]))
    assert fit_conversation(tokenizer, messages, whole) == (chat_ids(tokenizer, messages), 0)
    assert fit_conversation(tokenizer, messages, whole - 1) == (chat_ids(tokenizer, messages[2:]), 1)
    assert fit_conversation(tokenizer, messages, last)[1] == 1
    with pytest.raises(ValueError, match=f"that message takes {last} tokens, and {last - 1} fit beside the room"):
        fit_conversation(tokenizer, messages, last - 1)


def test_the_terminal_chat_refuses_what_cannot_fit_and_goes_on(model, tokenizer):
    script = Script("word " * 200, "say <|end|>", PAIRS[0][0])
    conversation = chat_loop(model, tokenizer, script.read, script.write, temperature=0, max_tokens=20)
    assert "(that message takes" in script.text and "special-token text '<|end|>'" in script.text
    assert [m["role"] for m in conversation] == ["user", "assistant"]
    for bad in (0, CONTEXT - 4):
        with pytest.raises(ValueError, match=f"max_tokens={bad} must be between 1 and {CONTEXT - 5}"):
            chat_loop(model, tokenizer, script.read, script.write, max_tokens=bad)
    chat_loop(model, tokenizer, Script().read, script.write, max_tokens=CONTEXT - 5)  # at the limit: fine


def test_ctrl_c_during_an_answer_stops_it_and_the_chat_goes_on(model, tokenizer):
    script = Script(PAIRS[0][0], PAIRS[1][0])
    interrupted = []

    def write(text):
        if text and "you>" not in text and not text.startswith("(") and text != "model> " and not interrupted:
            interrupted.append(text)
            raise KeyboardInterrupt
        script.write(text)

    conversation = chat_loop(model, tokenizer, script.read, write, temperature=0, max_tokens=20)
    assert "(stopped; the question is left out of the conversation)" in script.text
    assert [m["content"] for m in conversation if m["role"] == "user"] == [PAIRS[1][0]]


# ---------------------------------------------------------------------------------------------
# Which model: chat_model reads the cache, builds nothing


def cache(preset: str, stage: str, key: str, inputs: dict | None = None) -> Path:
    """A finished stage's folder, by hand: a manifest with its key and inputs."""
    folder = run_dir(stage, preset)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"key": key, "inputs": inputs or {}, "files": [], "summary": {}, "seconds": 0.0, "config": {}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def small_model(tokenizer, seed: int) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=tokenizer.vocab_size, context=32, n_layer=1, n_head=1, n_embd=16))


def same(a: GPT, b: GPT) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_chat_model_takes_the_best_rated_chat_model_from_the_cache(home, tokenizer):
    from minilm.train.checkpoint import save_checkpoint

    with pytest.raises(ModelNotFoundError, match=r"the ci preset has no tokenizer \(stage 2\) in the cache .*: run "
                                                 r"`python -m minilm speedrun --preset ci` \(or `python -m minilm "
                                                 r"tokenizer --preset ci`\) first"):
        chat_model("ci")
    tokenizer.save(cache("ci", "tokenizer", "tok") / "tokenizer")
    with pytest.raises(ModelNotFoundError, match=r"no chat model \(stage 6 or 7\) in the cache"):
        chat_model("ci")

    models = {name: small_model(tokenizer, seed) for seed, name in enumerate(["SFT", "DPO", "PPO", "GRPO"])}
    finetuned = cache("ci", "finetune", "sft", {"tokenizer": "tok"})
    save_checkpoint(finetuned / "sft" / "checkpoint", 1, models["SFT"], {}, {})
    model, loaded_tokenizer, which = chat_model("ci")
    assert same(model, models["SFT"]) and not model.training
    assert which == "stage 6's SFT model (ci preset; stage 7 is not built)"
    assert loaded_tokenizer.encode_ordinary("The cat") == tokenizer.encode_ordinary("The cat")

    aligned = cache("ci", "rlhf", "aligned", {"tokenizer": "tok", "finetuned": "sft"})
    for name, folder in (("DPO", "dpo"), ("PPO", "ppo"), ("GRPO", "grpo")):
        save_checkpoint(aligned / folder / "checkpoints", 1, models[name], {}, {})
    model, _, which = chat_model("ci")
    assert same(model, models["DPO"]) and which == "stage 7's DPO policy (ci preset): stage 8 has not rated the models"

    def rate(ratings: dict, aligned_key: str = "aligned"):
        evaluated = cache("ci", "evaluate", "eval", {"aligned": aligned_key})
        (evaluated / "results.json").write_text(json.dumps({"human": {"ratings": ratings}}))

    rate({"base": 1300, "LoRA": 1200, "SFT": 990, "DPO": 1000, "PPO": 1010.4, "GRPO": 1010.2})  # base, LoRA: not served
    model, _, which = chat_model("ci")
    assert same(model, models["PPO"])
    assert which == "stage 7's PPO policy (ci preset): the best Bradley-Terry rating in stage 8, 1010"
    rate({"SFT": 1001, "DPO": 1000, "PPO": 999, "GRPO": 998})
    model, _, which = chat_model("ci")
    assert same(model, models["SFT"]) and which.startswith("stage 6's SFT model (ci preset): the best Bradley-Terry")
    rate({"SFT": 1001, "DPO": 1000, "PPO": 1002, "GRPO": 998}, aligned_key="an older build")
    model, _, which = chat_model("ci")
    assert same(model, models["DPO"]) and which.endswith("stage 8 rated an older build of stage 7")

    cache("ci", "rlhf", "aligned", {"tokenizer": "another tokenizer"})
    with pytest.raises(ModelNotFoundError, match=r"the cached rlhf stage of the ci preset was trained with another "
                                                 r"tokenizer than the one cached now: run `python -m minilm rlhf "
                                                 r"--preset ci` again"):
        chat_model("ci")


def test_chat_model_serves_a_checkpoint_with_the_presets_tokenizer(home, tokenizer, tmp_path):
    from minilm.train.checkpoint import save_checkpoint

    tokenizer.save(cache("ci", "tokenizer", "tok") / "tokenizer")
    mine = small_model(tokenizer, 5)
    save_checkpoint(tmp_path / "mine", 3, mine, {}, {})
    model, _, which = chat_model("ci", checkpoint=tmp_path / "mine")
    assert same(model, mine) and which == f"the checkpoint {tmp_path / 'mine'}, with the ci preset's tokenizer"
    with pytest.raises(ModelNotFoundError, match="no such folder"):
        chat_model("ci", checkpoint=tmp_path / "nothing")
    torch.manual_seed(0)
    other = GPT(GPTConfig(vocab_size=400, context=32, n_layer=1, n_head=1, n_embd=16))
    save_checkpoint(tmp_path / "other", 1, other, {}, {})
    with pytest.raises(ModelNotFoundError, match="the checkpoint's vocabulary has 400 tokens, the ci preset's "
                                                 "tokenizer 300"):
        chat_model("ci", checkpoint=tmp_path / "other")


# ---------------------------------------------------------------------------------------------
# The commands


def run_main(argv, capsys) -> tuple[int, str]:
    from minilm.__main__ import main

    try:
        status = main(argv)
    except SystemExit as stop:
        status = stop.code
        if isinstance(status, str):
            print(status, file=__import__("sys").stderr)
            status = 1
    return status, capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["serve", "--port", "-1"], "error: argument --port: '-1' is not a port: choose a whole number from 1 to 65535 "
                                "(see python -m minilm serve --help)"),
    (["serve", "--port", "0"], "argument --port: '0' is not a port"),
    (["serve", "--port", "65536"], "argument --port: '65536' is not a port"),
    (["serve", "--port", "http"], "argument --port: 'http' is not a port"),
    (["serve", "--max-batch-size", "0"], "argument --max-batch-size: '0' is not a whole number of at least 1"),
    (["chat", "--max-tokens", "-5"], "argument --max-tokens: '-5' is not a whole number of at least 1"),
    (["chat", "--temperature", "-0.1"], "argument --temperature: '-0.1' is not a temperature: choose a number of at "
                                        "least 0 (0 is greedy)"),
    (["chat", "--temperature", "nan"], "argument --temperature: 'nan' is not a temperature"),
    (["chat", "--preset", "big"], "argument --preset: invalid choice: 'big'"),
    (["serve", "--force"], "error: unrecognized arguments: --force"),
])
def test_command_line_mistakes_are_one_line(argv, message, capsys):
    status, err = run_main(argv, capsys)
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_the_edges_of_the_command_line_settings_parse():
    from minilm.__main__ import build_parser

    args = build_parser().parse_args(["serve", "--port", "65535", "--max-batch-size", "1", "--host", "0.0.0.0"])
    assert (args.port, args.max_batch_size, args.host, args.checkpoint) == (65535, 1, "0.0.0.0", None)
    args = build_parser().parse_args(["serve", "--port", "1"])
    assert (args.port, args.host, args.max_batch_size) == (1, "127.0.0.1", 8)
    args = build_parser().parse_args(["chat", "--temperature", "0", "--max-tokens", "1"])
    assert (args.temperature, args.max_tokens) == (0.0, 1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_and_chat_without_a_cache_say_what_to_run(home, capsys):
    for argv in (["serve", "--preset", "ci", "--port", str(free_port())], ["chat", "--preset", "ci"]):
        status, err = run_main(argv, capsys)
        assert status == 1 and err.count("\n") == 1, err
        assert err.startswith("error: the ci preset has no tokenizer (stage 2) in the cache") and \
            "run `python -m minilm speedrun --preset ci`" in err
    assert not home.exists()  # nothing written: they only read the cache


def test_serve_on_a_busy_port_says_so(home, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        status, err = run_main(["serve", "--preset", "ci", "--port", str(port)], capsys)
    assert status == 1 and err == (f"error: cannot listen on 127.0.0.1:{port} (Address already in use): choose "
                                   "another --port or --host, or stop the program that uses it\n")
