"""What one request may ask of the API server (`make serve`), and how many may wait: an ASGI guard around
LLaMA-Factory's app.

LLaMA-Factory's server reads a body of any size, passes any `max_tokens` and sampling value to `generate`, queues
every request behind the one generating without limit, and generates to the end after the client has gone.
`guard(app, chat_model)` answers before the model is reached:

- 413 for a body over API_MAX_BODY bytes (default 1 MiB), read no further;
- 400 naming the field (chat completions, from a client with the key): `max_tokens` from 1 to the model's context,
  `n` from 1 to API_MAX_N (32), `temperature` 0–2, `top_p` in (0, 1], `presence_penalty` (LLaMA-Factory's
  repetition penalty) > 0, all finite; a prompt longer than the context;
- 429 with Retry-After when API_MAX_QUEUE requests (16) already wait, or one waited API_QUEUE_SECONDS (120):
  API_MAX_CONCURRENT (1, like LLaMA-Factory's MAX_CONCURRENT) generate at once, the others wait their turn;
- a client that disconnects stops its own generation at the next token (a stopping criterion on that request's
  `model.generate`, found through a context variable; vLLM's request is cancelled), and one still waiting never
  starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hmac
import json
import math
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CHAT = "/v1/chat/completions"
GENERATING = (CHAT, "/v1/score/evaluation")
# the request whose generation a thread runs: set by the guard, read where LLaMA-Factory builds generate()'s kwargs
CLIENT_GONE: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("client_gone", default=None)


def replaying(body: bytes, then: Receive) -> Receive:
    """An ASGI receive that gives the body already read, whole, then whatever `then` gives."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await then()

    return replay


@dataclass(frozen=True)
class Limits:
    context: int = 4096
    max_body: int = 1 << 20
    max_n: int = 32
    concurrent: int = 1
    queue: int = 16
    queue_seconds: float = 120.0

    @classmethod
    def from_env(cls, context: int) -> Limits:
        def number(name: str, default: float, kind: type = int) -> Any:
            value = os.environ.get(name, "")
            return kind(value) if value.strip() else default

        return cls(
            context=context,
            max_body=number("API_MAX_BODY", cls.max_body),
            max_n=number("API_MAX_N", cls.max_n),
            concurrent=number("API_MAX_CONCURRENT", number("MAX_CONCURRENT", cls.concurrent)),
            queue=number("API_MAX_QUEUE", cls.queue),
            queue_seconds=number("API_QUEUE_SECONDS", cls.queue_seconds, float),
        )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return _number(value) and float(value).is_integer()


def request_problem(request: Any, limits: Limits) -> str | None:
    """The first out-of-range field of a chat completion request, as "field: why"; None where all are in range.

    Types the app checks itself (a string temperature, no messages) are left to its own 422."""
    if not isinstance(request, dict):
        return None
    checks: list[tuple[str, Callable[[Any], bool], str]] = [
        (
            "max_tokens",
            lambda v: _integer(v) and 1 <= v <= limits.context,
            f"an integer from 1 to {limits.context} (the model's context)",
        ),
        (
            "n",
            lambda v: _integer(v) and 1 <= v <= limits.max_n,
            f"an integer from 1 to {limits.max_n} (API_MAX_N)",
        ),
        ("temperature", lambda v: _number(v) and 0 <= v <= 2, "a number from 0 to 2"),
        ("top_p", lambda v: _number(v) and 0 < v <= 1, "a number above 0, at most 1"),
        ("presence_penalty", lambda v: _number(v) and v > 0, "a positive number (LLaMA-Factory's repetition_penalty)"),
    ]
    for field, ok, expected in checks:
        value = request.get(field)
        if value is not None and not ok(value):
            return f"{field}: {json.dumps(value)[:40]} is out of range, expected {expected}"
    return None


def prompt_text(request: Any) -> str:
    """Every text of the request's messages, joined: what the prompt's length is counted on."""
    parts: list[str] = []
    for message in request.get("messages") or [] if isinstance(request, dict) else []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                item["text"] for item in content if isinstance(item, dict) and isinstance(item.get("text"), str)
            )
    return "\n".join(parts)


def context_length(chat_model: Any) -> int:
    """The served model's context in tokens (its config's positions; vLLM's max_model_len; else 4096)."""
    engine = getattr(chat_model, "engine", None)
    model = getattr(engine, "model", None)
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    with contextlib.suppress(Exception):  # vLLM's AsyncLLMEngine
        return int(model.engine.model_config.max_model_len)  # type: ignore[union-attr]
    maximum = getattr(getattr(engine, "tokenizer", None), "model_max_length", None)
    return maximum if isinstance(maximum, int) and 0 < maximum < 10**7 else 4096


def stop_generation_on_disconnect() -> None:
    """Give each `generate` of LLaMA-Factory's Hugging Face engine a stopping criterion on its request's CLIENT_GONE.

    `_process_args` builds generate()'s kwargs in the request's context for both paths (in `asyncio.to_thread`, which
    copies it, for a whole answer; in the request's task, before the streaming thread starts)."""
    import torch
    from llamafactory.chat.hf_engine import HuggingfaceEngine
    from transformers import StoppingCriteria, StoppingCriteriaList

    original = HuggingfaceEngine.__dict__["_process_args"].__func__
    if getattr(original, "stops_on_disconnect", False):
        return

    class ClientGone(StoppingCriteria):
        def __init__(self, gone: threading.Event):
            self.gone = gone

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            return torch.full((input_ids.shape[0],), self.gone.is_set(), dtype=torch.bool, device=input_ids.device)

    def process_args(*args: Any, **kwargs: Any) -> tuple[dict[str, Any], int]:
        gen_kwargs, prompt_length = original(*args, **kwargs)
        gone = CLIENT_GONE.get()
        if gone is not None:
            gen_kwargs["stopping_criteria"] = StoppingCriteriaList([ClientGone(gone)])
        return gen_kwargs, prompt_length

    process_args.stops_on_disconnect = True  # type: ignore[attr-defined]
    HuggingfaceEngine._process_args = staticmethod(process_args)


async def answer(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}, ensure_ascii=False).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    """The ASGI app in front of LLaMA-Factory's: body size, field ranges, a bounded queue, stop on disconnect."""

    def __init__(self, app: Any, limits: Limits, count_tokens: Callable[[str], int] | None = None):
        self.app, self.limits, self.count_tokens = app, limits, count_tokens
        self.key = os.environ.get("API_KEY", "")
        self.slots = asyncio.Semaphore(limits.concurrent)
        self.waiting = 0

    def authorized(self, scope: Scope) -> bool:
        """The app's own bearer check (an unauthorised request goes straight to its 401, never into the queue)."""
        if not self.key:
            return True
        header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        scheme, _, credentials = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip(), self.key)

    async def read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None where it is over max_body (declared or as it arrives)."""
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.strip().isdigit() or int(declared) > self.limits.max_body):
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)  # disconnected: the app sees the disconnect next
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body = await self.read_body(scope, receive)
        if body is None:
            return await answer(
                send,
                413,
                f"request body over {self.limits.max_body} bytes (API_MAX_BODY)",
                [(b"connection", b"close")],
            )
        replay = replaying(body, receive)
        if scope.get("method") != "POST" or scope.get("path") not in GENERATING or not self.authorized(scope):
            return await self.app(scope, replay, send)
        try:
            request = json.loads(body)
        except ValueError:
            return await self.app(scope, replay, send)  # the app's own answer to bad JSON
        if scope["path"] == CHAT:
            problem = request_problem(request, self.limits) or await self.prompt_problem(request)
            if problem:
                return await answer(send, 400, problem)
        await self.generate(scope, body, receive, send)

    async def prompt_problem(self, request: Any) -> str | None:
        text = prompt_text(request)
        if self.count_tokens is None or len(text.encode()) < self.limits.context:  # a token is at least one byte
            return None
        tokens = await asyncio.to_thread(self.count_tokens, text)
        if tokens >= self.limits.context:
            return f"messages: {tokens} tokens, the model's context is {self.limits.context}"
        return None

    async def generate(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        """Wait for a slot (bounded), then run the app with a disconnect watcher that stops the generation."""
        limits = self.limits
        if self.waiting >= limits.queue and self.slots.locked():
            return await answer(
                send, 429, f"{self.waiting} requests already waiting (API_MAX_QUEUE)", [(b"retry-after", b"5")]
            )
        gone, disconnected = threading.Event(), asyncio.Event()

        async def watch() -> None:  # the only reader of the client's messages from here on
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()
            disconnected.set()

        watcher = asyncio.create_task(watch())
        self.waiting += 1
        try:
            await asyncio.wait_for(self.slots.acquire(), limits.queue_seconds)
        except TimeoutError:
            watcher.cancel()
            return await answer(
                send,
                429,
                f"waited {limits.queue_seconds:g} s for a free slot (API_QUEUE_SECONDS)",
                [(b"retry-after", b"5")],
            )
        finally:
            self.waiting -= 1

        async def until_disconnected() -> Message:  # the watcher reads the client's messages now
            await disconnected.wait()
            return {"type": "http.disconnect"}

        replay = replaying(body, until_disconnected)
        token = CLIENT_GONE.set(gone)
        try:
            if not gone.is_set():  # a client that left while waiting is not answered
                await until_gone(self.app(scope, replay, send), disconnected)
        finally:
            CLIENT_GONE.reset(token)
            self.slots.release()
            watcher.cancel()


async def until_gone(call: Awaitable[None], disconnected: asyncio.Event) -> None:
    """Run the app's answer, cancelled when the client disconnects (vLLM aborts a cancelled request; the Hugging
    Face engine's thread stops at its stopping criterion)."""
    task, gone = asyncio.ensure_future(call), asyncio.ensure_future(disconnected.wait())
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if not task.cancelled():
        task.result()


def guard(app: Any, chat_model: Any) -> Guard:
    """`app` (LLaMA-Factory's API app on `chat_model`) behind the limits, read from the environment."""
    limits = Limits.from_env(context_length(chat_model))
    tokenizer = getattr(getattr(chat_model, "engine", None), "tokenizer", None)
    count = (lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])) if tokenizer else None
    if type(getattr(chat_model, "engine", None)).__name__ == "HuggingfaceEngine":
        stop_generation_on_disconnect()
    return Guard(app, limits, count)
