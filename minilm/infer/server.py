"""An OpenAI-compatible HTTP server: the chat model behind the API that every OpenAI client already speaks.

A model in a notebook serves one person. A server serves many at once, from programs we did not write: the
`openai` Python client, LangChain, a browser. So we speak OpenAI's protocol exactly (the same URLs, the same
JSON field names, the same error body) and any of them works with ``base_url="http://127.0.0.1:8000/v1"``:

- ``POST /v1/chat/completions``: a conversation in, the assistant's answer out, in the chat format of stage 6;
- ``POST /v1/completions``: text in, its continuation out (no chat format);
- ``GET /v1/models``: the one model served; ``GET /health``: whether the engine runs; ``GET /``: a chat page.

With ``"stream": true`` the answer comes as server-sent events, a line ``data: {json}`` and a blank line per
piece of text as soon as the engine writes it, then ``data: [DONE]``; without, as one JSON object at the end.

**One engine thread.** PyTorch's work runs in ONE background thread that owns the `Engine`; the web server's
event loop only parses requests and streams answers, so it stays free while the model computes. Requests
reach that thread through a thread-safe queue; between two decode steps it adds every new request to the
running batch (dynamic batching: nobody waits for the batch to finish), and sends each event back to the
request's own asyncio queue with `loop.call_soon_threadsafe`, the one safe way into an event loop from
another thread. A client that goes away, streaming or not, cancels its request: its slot in the batch goes
to the next one instead of to text that nobody reads.

**Limits.** A server on a network must refuse what would hurt everybody else (`ServerLimits`): a body too
large (413), a client that sends its body too slowly and holds a connection for nothing (408), more waiting
requests than the queue holds (429, with Retry-After: come back later rather than wait forever), a
generation running past its time (504). A request the server cannot read gets 400 with OpenAI's error body,
``{"error": {"message", "type", "param", "code"}}``, whose message names the problem and the fix: the server
never crashes on a bad request. When the engine thread has stopped (shutdown, or an error), 503.

The server listens on 127.0.0.1, this machine only, unless told otherwise: it has no authentication.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from minilm.finetune.chat import ChatFormatError, encode_chat
from minilm.infer.engine import Engine
from minilm.infer.models import end_tokens
from minilm.infer.sampling import MAX_STOP, SamplingParams
from minilm.model.gpt import GPT
from minilm.tokenizer.tokenizer import Tokenizer

PAGE = Path(__file__).with_name("page.html")
BOS = "<|endoftext|>"  # every pretraining document starts with it, so a completion's prompt does too
log = logging.getLogger("minilm.server")


@dataclass(frozen=True)
class ServerLimits:
    """What the server accepts and how long it waits: the limits that keep one client from starving the others."""

    max_batch_size: int = 8  # requests the engine runs together: each decode step advances all of them
    max_queue: int = 32  # accepted requests not yet running; one more gets 429 Too Many Requests
    max_tokens: int | None = None  # the most tokens one answer may have (None: the model's context); a request
    # that names no max_tokens gets as many as its prompt leaves room for in the context, up to this
    max_body_bytes: int = 1 << 20  # a larger request body gets 413 Content Too Large (1 MiB holds any chat)
    body_timeout: float = 10.0  # seconds a client may take to send its body; a slower one gets 408
    request_timeout: float = 300.0  # seconds from a request's arrival to its last token; then it is stopped (504)
    retry_after: int = 1  # seconds that a 429 or 503 answer asks the client to wait before it tries again

    def __post_init__(self):
        for name in ("max_batch_size", "max_queue", "max_body_bytes", "retry_after"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ServerLimits.{name}={value!r} must be an integer of at least 1")
        if self.max_tokens is not None and (not isinstance(self.max_tokens, int) or self.max_tokens < 1):
            raise ValueError(f"ServerLimits.max_tokens={self.max_tokens!r} must be an integer of at least 1, or None "
                             "for the model's context")
        for name in ("body_timeout", "request_timeout"):
            if not isinstance(getattr(self, name), (int, float)) or not getattr(self, name) > 0:
                raise ValueError(f"ServerLimits.{name}={getattr(self, name)!r} must be a number of seconds > 0")


# ---------------------------------------------------------------------------------------------
# 1. Errors, as OpenAI writes them


class ApiError(Exception):
    """A request the server refuses: its HTTP status and OpenAI's error body."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def too_large(size: int, limits: ServerLimits) -> ApiError:
    return ApiError(413, f"the request body is {size:,} bytes or more, over this server's limit of "
                         f"{limits.max_body_bytes:,} bytes (ServerLimits.max_body_bytes): send a shorter conversation",
                    code="request_too_large", headers={"Connection": "close"})


# ---------------------------------------------------------------------------------------------
# 2. The engine thread


@dataclass(eq=False)
class Ticket:
    """One request on its way through the engine: what to generate, and the queue its events come back to."""

    prompt_ids: list[int]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)  # engine Events, then an ApiError on failure
    request_id: int | None = None  # the engine's id (set by the engine thread)
    started: bool = False  # a first event came back: it runs in the batch, it no longer waits
    finished: bool = False  # its last event came back


class Batcher:
    """The engine and the one thread that runs it. `submit` and `cancel` are called from the event loop;
    everything else happens in the engine thread, which alone touches the engine.

    `batch_sizes` counts the decode steps by how many requests they advanced together (dynamic batching,
    seen from outside); `finished` counts the requests by how they ended ("stop", "length", "cancelled").
    """

    def __init__(self, engine: Engine, max_queue: int, retry_after: int = 1):
        self.engine, self.max_queue, self.retry_after = engine, max_queue, retry_after
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()  # ("add" | "cancel", ticket), or None: stop
        self.lock = threading.Lock()  # guards waiting, active and closing, which both threads read and write
        self.waiting = 0  # accepted requests that have not started yet (the queue that max_queue bounds)
        self.active = 0  # accepted requests not finished yet
        self.closing = True  # until `start`
        self.error: BaseException | None = None  # what stopped the engine thread, if it failed
        self.thread: threading.Thread | None = None
        self.tickets: dict[int, Ticket] = {}  # the engine's request id -> ticket (engine thread only)
        self.batch_sizes: Counter = Counter()
        self.finished: Counter = Counter()

    # --- called from the event loop

    def start(self) -> None:
        """Start the engine thread (again, after `close`)."""
        if self.thread is not None and self.thread.is_alive():
            return
        self.closing, self.error = False, None
        self.thread = threading.Thread(target=self._run, name="minilm-engine", daemon=True)
        self.thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the engine thread; the requests still in it end with 503."""
        with self.lock:
            self.closing = True
        self.inbox.put(None)
        if self.thread is not None:
            self.thread.join(timeout)

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> Ticket:
        """Queue a request for the engine thread; raises ApiError 429 when `max_queue` requests already wait,
        503 when the engine thread is not running."""
        ticket = Ticket(list(prompt_ids), params, asyncio.get_running_loop())
        with self.lock:
            if self.closing or self.error is not None:
                raise self.unavailable()
            if self.waiting >= self.max_queue:
                raise ApiError(429, f"the server is busy: {self.waiting} requests are already waiting for the model "
                                    f"(ServerLimits.max_queue={self.max_queue}); try again in {self.retry_after} s",
                               type="rate_limit_error", code="rate_limit_exceeded",
                               headers={"Retry-After": str(self.retry_after)})
            self.waiting += 1
            self.active += 1
            self.inbox.put(("add", ticket))
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """Stop generating for `ticket` (nothing happens once it has finished)."""
        if not ticket.finished:
            self.inbox.put(("cancel", ticket))

    def unavailable(self) -> ApiError:
        why = (f"the model's engine stopped after an error ({self.error!r}): restart the server"
               if self.error is not None else "the server is shutting down: try again when it is back")
        return ApiError(503, why, type="server_error", code="unavailable",
                        headers={"Retry-After": str(self.retry_after)})

    # --- the engine thread

    def _run(self) -> None:
        try:
            while self._read_inbox(block=not self.engine.has_work):
                if self.engine.has_work:
                    events = self.engine.step()
                    self.batch_sizes[len({event.request_id for event in events})] += 1
                    for event in events:
                        self._deliver(event)
        except Exception as error:  # a bug or out of memory: every request gets 503, and so does every later one
            log.exception("the engine thread failed")
            self.error = error
        finally:
            self._shut()

    def _read_inbox(self, block: bool) -> bool:
        """Take every message waiting in the inbox (waiting for one when `block`); False on the stop message."""
        try:
            message = self.inbox.get() if block else self.inbox.get_nowait()
            while True:
                if message is None:
                    return False
                action, ticket = message
                self._add(ticket) if action == "add" else self._cancel(ticket)
                message = self.inbox.get_nowait()
        except queue.Empty:
            return True

    def _add(self, ticket: Ticket) -> None:
        try:
            ticket.request_id = self.engine.add(ticket.prompt_ids, ticket.params)
        except ValueError as error:  # the handler checked the prompt's length; this is a last line of defence
            self._send(ticket, ApiError(400, str(error)))
            return
        self.tickets[ticket.request_id] = ticket

    def _cancel(self, ticket: Ticket) -> None:
        if self.tickets.pop(ticket.request_id, None) is None:
            return  # it finished meanwhile
        self.engine.cancel(ticket.request_id)
        self._send(ticket, Cancelled(ticket.request_id))

    def _deliver(self, event) -> None:
        ticket = self.tickets.get(event.request_id)
        if ticket is None:
            return  # cancelled already
        if event.finish_reason is not None:
            del self.tickets[event.request_id]
        self._send(ticket, event)

    def _send(self, ticket: Ticket, item) -> None:
        """Put an event (or an ApiError) in the ticket's queue, from this thread into the ticket's event loop."""
        last = isinstance(item, ApiError) or item.finish_reason is not None
        with self.lock:
            if not ticket.started:
                ticket.started = True
                self.waiting -= 1
            if last:
                ticket.finished = True
                self.active -= 1
        if last and not isinstance(item, ApiError):
            self.finished[item.finish_reason] += 1
        try:
            ticket.loop.call_soon_threadsafe(ticket.events.put_nowait, item)
        except RuntimeError:  # its event loop has closed: nobody is left to read it
            pass

    def _shut(self) -> None:
        """End every request still in the engine or the inbox with 503, and refuse new ones."""
        with self.lock:
            self.closing = True
        failed = self.unavailable()
        while True:
            try:
                message = self.inbox.get_nowait()
            except queue.Empty:
                break
            if message is not None and message[0] == "add":
                self._send(message[1], failed)
        for request_id, ticket in list(self.tickets.items()):
            with contextlib.suppress(Exception):
                self.engine.cancel(request_id)
            self._send(ticket, failed)
        self.tickets.clear()
        with contextlib.suppress(Exception):  # let the engine drop what it was cancelled
            while self.error is None and self.engine.has_work:
                self.engine.step()


@dataclass(frozen=True)
class Cancelled:
    """The last event of a request cancelled from the server's side (its client left, or it ran out of time)."""

    request_id: int
    token: int | None = None
    text: str = ""
    finish_reason: str = "cancelled"


async def events(ticket: Ticket, deadline: float) -> AsyncIterator:
    """The ticket's events as they come, until its last one; ApiError on a failure or past the deadline
    (the event loop's clock)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            item = await asyncio.wait_for(ticket.events.get(), deadline - loop.time())
        except asyncio.TimeoutError:
            raise ApiError(504, "the answer took longer than this server's limit (ServerLimits.request_timeout): "
                                "ask for fewer max_tokens, or try again when the server is less busy",
                           type="timeout_error", code="request_timeout") from None
        if isinstance(item, ApiError):
            raise item
        yield item
        if item.finish_reason is not None:
            return


# ---------------------------------------------------------------------------------------------
# 3. Requests: reading, checking, turning into SamplingParams


class StreamOptions(BaseModel):
    """OpenAI's `stream_options`: with include_usage, a last chunk before [DONE] carries the token counts."""

    model_config = ConfigDict(extra="forbid", strict=True)
    include_usage: bool = False


class Sampling(BaseModel):
    """The request fields that both endpoints take (OpenAI's, plus top_k, min_p and repetition_penalty)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    model: str
    max_tokens: int | None = None
    max_completion_tokens: int | None = None  # OpenAI's newer name for max_tokens
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    n: int | None = None
    user: str | None = None  # accepted, as OpenAI's clients send it; not used


class ChatRequest(Sampling):
    messages: list[dict[str, Any]]


class CompletionRequest(Sampling):
    prompt: str


async def read_json(request: Request, limits: ServerLimits) -> dict:
    """The request's JSON object, read within the limits: 415 for another content type, 413 for a body over
    `max_body_bytes`, 408 when it takes longer than `body_timeout` to arrive, 400 when it is not a JSON object."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, f"the body must be JSON, sent with the header Content-Type: application/json "
                            f"(this request's is {media_type or 'missing'})", code="unsupported_media_type")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise too_large(int(declared), limits)
    body = bytearray()

    async def read() -> None:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limits.max_body_bytes:
                raise too_large(len(body), limits)

    try:
        await asyncio.wait_for(read(), limits.body_timeout)
    except asyncio.TimeoutError:
        raise ApiError(408, f"the request body took longer than {limits.body_timeout:g} s to arrive ({len(body):,} "
                            "bytes came): send the whole body at once", type="timeout_error", code="request_timeout",
                       headers={"Connection": "close"}) from None
    except ClientDisconnect:
        raise ApiError(400, "the client closed the connection before the body was complete") from None

    def refuse(constant: str):
        raise ValueError(f"{constant} is not a JSON number")

    try:
        parsed = json.loads(bytes(body), parse_constant=refuse)
    except ValueError as error:  # bad JSON, bad UTF-8, NaN
        raise ApiError(400, f"the body is not valid JSON ({error}): send one JSON object") from None
    if not isinstance(parsed, dict):
        raise ApiError(400, f"the body must be a JSON object {{...}}, got a {type(parsed).__name__}")
    return parsed


def parse(kind: type[BaseModel], body: dict):
    """The body as a `kind` request; 400 naming the first wrong field and what it should be."""
    try:
        return kind.model_validate(body)
    except ValidationError as error:
        raise invalid_request(error.errors(), sorted(kind.model_fields)) from None


def invalid_request(errors: list[dict], fields: list[str]) -> ApiError:
    """Pydantic's (or FastAPI's) validation errors as one 400 that names the first wrong field."""
    first = errors[0]
    loc = [str(part) for part in first["loc"]]
    if loc and loc[0] in ("body", "query", "path", "header"):  # where FastAPI found it, not a field's name
        loc = loc[1:]
    param = loc[0] if loc else None
    if first["type"] == "extra_forbidden":
        return ApiError(400, f"unknown field {param!r}: this server takes {', '.join(fields)}", param=param,
                        code="unknown_parameter")
    if first["type"] == "missing":
        return ApiError(400, f"the request has no {param!r}, which is required", param=param)
    where = ".".join(loc)
    return ApiError(400, f"{where}={first.get('input')!r:.80}: {first['msg'].lower()}", param=param)


def sampling_params(request: Sampling, prompt_tokens: int, context: int, limits: ServerLimits,
                    prompt_field: str) -> SamplingParams:
    """The request's decoding settings, checked against the server's limits and the model's context."""
    if request.n not in (None, 1):
        raise ApiError(400, f"n={request.n}: this server writes one answer per request; ask for n=1 and send "
                            f"{request.n} requests instead", param="n")
    name = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
    asked = request.max_completion_tokens if request.max_completion_tokens is not None else request.max_tokens
    ceiling = min(limits.max_tokens or context, context)
    if asked is not None and asked < 1:
        raise ApiError(400, f"{name}={asked} must be at least 1", param=name)
    if asked is not None and asked > ceiling:
        why = "ServerLimits.max_tokens" if ceiling < context else "the model's context"
        raise ApiError(400, f"{name}={asked} is more than this server allows: at most {ceiling} tokens ({why})",
                       param=name)
    room = context - prompt_tokens
    if room < 1:
        raise ApiError(400, f"the prompt is {prompt_tokens} tokens, and the model's context is {context}: no room "
                            f"is left for an answer; shorten the prompt to at most {context - 1} tokens",
                       param=prompt_field, code="context_length_exceeded")
    if asked is not None and asked > room:
        raise ApiError(400, f"the prompt's {prompt_tokens} tokens and {name}={asked} add up to "
                            f"{prompt_tokens + asked}, more than the model's context of {context} tokens: ask for at "
                            f"most {room}, or shorten the prompt", param=name, code="context_length_exceeded")
    stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    if len(stop) > MAX_STOP:
        raise ApiError(400, f"stop has {len(stop)} strings; at most {MAX_STOP} are allowed", param="stop")
    knobs = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "seed")
    given = {knob: getattr(request, knob) for knob in knobs if getattr(request, knob) is not None}
    try:
        return SamplingParams(max_tokens=asked or min(ceiling, room), stop=tuple(stop), **given)
    except ValueError as error:  # SamplingParams' own checks: "temperature=-1 must be ..."
        named = str(error).split("=")[0]
        raise ApiError(400, str(error), param=named if named in Sampling.model_fields else None) from None


# ---------------------------------------------------------------------------------------------
# 4. Answers: OpenAI's objects, whole or streamed


@dataclass
class Reply:
    """How one answer is written: a chat completion or a text completion, under one id."""

    chat: bool
    model: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self):
        self.id = self.id or f"{'chatcmpl' if self.chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"

    def _object(self, kind: str, choice: dict) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "choices": [choice]}

    def whole(self, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int) -> dict:
        choice = {"index": 0, "logprobs": None, "finish_reason": finish_reason}
        if self.chat:
            answer = self._object("chat.completion", {**choice, "message": {"role": "assistant", "content": text}})
        else:
            answer = self._object("text_completion", {**choice, "text": text})
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        return {**answer, "usage": usage}

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> str:
        """The last event of a stream asked for with stream_options.include_usage: no choices, the token counts."""
        data = {**self._object("chat.completion.chunk" if self.chat else "text_completion", {}), "choices": [],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}
        return sse(data)

    def chunk(self, text: str | None, finish_reason: str | None = None, role: bool = False) -> str:
        """One server-sent event: a piece of the answer (or its end, with `finish_reason`)."""
        choice = {"index": 0, "logprobs": None, "finish_reason": finish_reason}
        if self.chat:
            delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
            data = self._object("chat.completion.chunk", {**choice, "delta": delta})
        else:
            data = self._object("text_completion", {**choice, "text": text or ""})
        return sse(data)


def sse(data: dict | str) -> str:
    """A server-sent event: one ``data:`` line and a blank line."""
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def counts_as_token(event, end_tokens: frozenset[int]) -> bool:
    """Whether an event adds a token to the answer: the end token that stops it does not (as in the engine's
    `Completion.token_ids`), nor does the event of a cancelled request."""
    return event.token is not None and event.token not in end_tokens


async def whole_answer(request: Request, batcher: Batcher, ticket: Ticket, reply: Reply, deadline: float) -> dict:
    """Wait for the whole answer; a client that disconnects meanwhile cancels it."""

    async def cancel_on_disconnect():
        while (await request.receive())["type"] != "http.disconnect":
            pass
        batcher.cancel(ticket)

    watcher = asyncio.create_task(cancel_on_disconnect())
    text, tokens, reason = [], 0, None
    try:
        async for event in events(ticket, deadline):
            text.append(event.text)
            tokens += counts_as_token(event, batcher.engine.end_tokens)
            reason = event.finish_reason
    finally:
        watcher.cancel()
        batcher.cancel(ticket)
    return reply.whole("".join(text), reason, len(ticket.prompt_ids), tokens)


async def streamed_answer(batcher: Batcher, ticket: Ticket, reply: Reply, deadline: float,
                          include_usage: bool = False) -> AsyncIterator[str]:
    """The answer as server-sent events. A client that disconnects makes Starlette cancel this generator, and
    `finally` cancels the request. The status (200) is sent before the answer starts, so a failure on the way (a
    timeout, the engine thread gone) comes as one more event, ``{"error": ...}``, before ``[DONE]``.
    `include_usage`: one more event before ``[DONE]`` with the token counts (OpenAI's stream_options)."""
    tokens = 0
    try:
        if reply.chat:
            yield reply.chunk(None, role=True)
        async for event in events(ticket, deadline):
            tokens += counts_as_token(event, batcher.engine.end_tokens)
            if event.text:
                yield reply.chunk(event.text)
            if event.finish_reason is not None:
                yield reply.chunk(None, event.finish_reason)
        if include_usage:
            yield reply.usage_chunk(len(ticket.prompt_ids), tokens)
    except ApiError as error:
        yield sse(error.body())
    finally:
        batcher.cancel(ticket)
    yield sse("[DONE]")


# ---------------------------------------------------------------------------------------------
# 5. The app


def create_app(model: GPT, tokenizer: Tokenizer, *, model_name: str = "minilm-chat",
               limits: ServerLimits = ServerLimits()) -> FastAPI:
    """The server: OpenAI's endpoints for `model`, a chat page at /, and an engine thread that runs while
    the app is served (`app.state.batcher`)."""
    context = model.config.context
    engine = Engine(model, tokenizer, max_batch_size=limits.max_batch_size, end_tokens=end_tokens(tokenizer))
    batcher = Batcher(engine, limits.max_queue, limits.retry_after)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        batcher.close()

    app = FastAPI(title="minilm", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher, app.state.limits, app.state.model_name = batcher, limits, model_name

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        return invalid_request(list(error.errors()), []).response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        return ApiError(error.status_code, f"{request.method} {request.url.path}: {error.detail}",
                        code="not_found" if error.status_code == 404 else None).response()

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception):
        log.exception("error in %s %s", request.method, request.url.path)
        return ApiError(500, f"the server failed on this request ({error!r}); this is a bug in minilm",
                        type="server_error").response()

    def check_model(name: str) -> None:
        if name != model_name:
            raise ApiError(404, f"the model {name!r} does not exist: this server serves {model_name!r} "
                                "(GET /v1/models lists it)", param="model", code="model_not_found")

    async def answer(request: Request, body: Sampling, prompt_ids: list[int], reply: Reply, prompt_field: str):
        params = sampling_params(body, len(prompt_ids), context, limits, prompt_field)
        deadline = asyncio.get_running_loop().time() + limits.request_timeout
        ticket = batcher.submit(prompt_ids, params)
        if body.stream:
            usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(streamed_answer(batcher, ticket, reply, deadline, usage),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return JSONResponse(await whole_answer(request, batcher, ticket, reply, deadline))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = parse(ChatRequest, await read_json(request, limits))
        check_model(body.model)
        try:
            prompt_ids = encode_chat(tokenizer, body.messages, add_generation_prompt=True)[0]
        except ChatFormatError as error:
            raise ApiError(400, str(error), param="messages") from None
        return await answer(request, body, prompt_ids, Reply(chat=True, model=model_name), "messages")

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = parse(CompletionRequest, await read_json(request, limits))
        check_model(body.model)
        prompt_ids = [tokenizer.special_id(BOS), *tokenizer.encode_ordinary(body.prompt)]
        return await answer(request, body, prompt_ids, Reply(chat=False, model=model_name), "prompt")

    def model_card() -> dict:
        return {"id": model_name, "object": "model", "created": 0, "owned_by": "minilm"}

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{name}")
    async def get_model(name: str):
        check_model(name)
        return model_card()

    @app.get("/health")
    async def health():
        if batcher.closing or batcher.error is not None:
            return batcher.unavailable().response()
        return {"status": "ok", "model": model_name, "active": batcher.active, "waiting": batcher.waiting}

    @app.get("/")
    async def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/favicon.ico")
    async def favicon():
        return Response(status_code=204)

    return app


# ---------------------------------------------------------------------------------------------
# 6. Running it


def serve(model: GPT, tokenizer: Tokenizer, host: str = "127.0.0.1", port: int = 8000, *,
          model_name: str = "minilm-chat", limits: ServerLimits = ServerLimits()) -> None:
    """Serve until Ctrl-C (uvicorn). 127.0.0.1 answers this machine only; host="0.0.0.0" opens the server to
    the network, which has no authentication: do that only on a network you trust."""
    check_address(host, port)
    uvicorn.run(create_app(model, tokenizer, model_name=model_name, limits=limits), host=host, port=port,
                log_level="info", timeout_graceful_shutdown=5)


def check_address(host: str, port: int) -> None:
    """Raise OSError, saying what to do, unless this process can listen on host:port (before loading uvicorn's
    machinery, whose own failure is a log line and an exit)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        socket.create_server((host, port), family=family).close()
    except OSError as error:
        why = os.strerror(error.errno) if error.errno else str(error)
        raise OSError(f"cannot listen on {host}:{port} ({why}): choose another --port or "
                      "--host, or stop the program that uses it") from None


@contextlib.contextmanager
def running_server(app: FastAPI, timeout: float = 30.0) -> Iterator[str]:
    """Serve `app` from a background thread on a free port of 127.0.0.1 and yield its base URL
    ("http://127.0.0.1:PORT"); on leaving, stop the server and wait for its thread (for tests and notebooks)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        while not server.started:
            if not thread.is_alive() or time.monotonic() - started > timeout:
                raise RuntimeError(f"the server did not start on 127.0.0.1:{port} within {timeout:g} s")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
