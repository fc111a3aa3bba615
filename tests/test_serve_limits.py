"""Issue #21, the API server: the audit's requests against a real `python -m pipeline.serve` on the tiny model (no
mocks), and the field rules of pipeline/serve_limits.py on their own. The server is stopped by its PID on teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from helpers import free_port, toy_records, write_dataset

from pipeline.serve_limits import Guard, Limits, request_problem

ROOT = Path(__file__).resolve().parents[1]
KEY = "test-key-not-secret"
HELLO = [{"role": "user", "content": "hello"}]


# ---------------------------------------------------------------- the field rules, no server


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", 1_000_000_000),
        ("max_tokens", 0),
        ("max_tokens", 2.5),
        ("max_tokens", True),
        ("n", 1000),
        ("n", 0),
        ("temperature", -1),
        ("temperature", 2.5),
        ("temperature", float("nan")),
        ("temperature", float("inf")),
        ("top_p", 0),
        ("top_p", 1.5),
        ("presence_penalty", 0),
        ("presence_penalty", -2),
    ],
)
def test_out_of_range_fields_are_named(field, value):
    problem = request_problem({"messages": HELLO, field: value}, Limits(context=2048))
    assert problem and problem.startswith(f"{field}: ")


def test_in_range_fields_pass():
    limits = Limits(context=2048)
    assert request_problem({"messages": HELLO}, limits) is None
    ok = {"max_tokens": 2048, "n": 32, "temperature": 0, "top_p": 1, "presence_penalty": 1.1, "stream": True}
    assert request_problem({"messages": HELLO, **ok}, limits) is None
    assert request_problem({"messages": HELLO, "temperature": None, "max_tokens": 4.0}, limits) is None


def test_a_request_waits_at_most_queue_seconds(monkeypatch):
    """In-process: one request holds the only slot; the next is told 429 after API_QUEUE_SECONDS, not kept waiting."""
    monkeypatch.delenv("API_KEY", raising=False)

    async def scenario() -> tuple[int, int]:
        release = asyncio.Event()

        async def app(scope, receive, send):
            await release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

        guard = Guard(app, Limits(context=64, queue_seconds=0.2))

        async def call() -> int:
            sent: list[dict] = []
            body = json.dumps({"model": "m", "messages": HELLO}).encode()
            pending = [{"type": "http.request", "body": body, "more_body": False}]
            connected = asyncio.Event()

            async def receive():
                if pending:
                    return pending.pop()
                await connected.wait()  # the client stays

            async def send(message):
                sent.append(message)

            scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
            await guard(scope, receive, send)
            return sent[0]["status"]

        first = asyncio.create_task(call())
        await asyncio.sleep(0.05)
        second = await call()
        release.set()
        return await first, second

    assert asyncio.run(scenario()) == (200, 429)


# ---------------------------------------------------------------- a real server


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tiny base model behind the guard, with a queue of 2 so that the test can fill it."""
    work = tmp_path_factory.mktemp("serve-limits")
    write_dataset(work / "data", "cola_toy_test", toy_records(4, "test", 2))
    port, log = free_port(), work / "server.log"
    command = [
        sys.executable,
        "-m",
        "pipeline.serve",
        "--model",
        "tiny",
        "--task",
        "cola_toy",
        "--port",
        str(port),
        f"model_name_or_path={tiny_model}",
        f"dataset_dir={work / 'data'}",
        "adapter_name_or_path=",
        f"output_dir={work / 'predict'}",
    ]
    env = {**os.environ, "API_KEY": KEY, "DISABLE_VERSION_CHECK": "1", "API_MAX_QUEUE": "2"}
    with log.open("w") as handle:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, f"server exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"server not up:\n{log.read_text()[-3000:]}"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url.replace("chat/completions", "models"), headers=auth(), timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        yield {"url": url, "pid": proc.pid, "log": log}
    finally:
        if proc.poll() is None:
            proc.kill()  # by PID: pipeline.serve is the server itself
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat(server, timeout: float = 10, key: str = KEY, **fields) -> httpx.Response:
    return httpx.post(
        server["url"], headers=auth(key), json={"model": "tiny", "messages": HELLO, **fields}, timeout=timeout
    )


def answered_quickly(server) -> None:
    """A normal request is still answered within a few seconds."""
    start = time.monotonic()
    response = chat(server, max_tokens=4)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["role"] == "assistant"
    assert time.monotonic() - start < 5


@pytest.mark.slow
def test_body_over_the_limit_is_413(server):
    start = time.monotonic()
    big = [{"role": "user", "content": "a" * 5_000_000}]
    response = httpx.post(server["url"], headers=auth(), json={"model": "tiny", "messages": big}, timeout=10)
    assert response.status_code == 413 and "API_MAX_BODY" in response.json()["detail"]
    assert time.monotonic() - start < 5
    answered_quickly(server)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("field", "value"),
    [("max_tokens", 1_000_000_000), ("temperature", -1), ("top_p", 0), ("n", 1000), ("presence_penalty", 0)],
)
def test_out_of_range_request_is_400_naming_the_field(server, field, value):
    start = time.monotonic()
    response = chat(server, **{field: value})
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith(f"{field}: ")
    assert time.monotonic() - start < 5
    answered_quickly(server)


@pytest.mark.slow
def test_non_finite_number_is_400(server):
    raw = b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}'
    response = httpx.post(server["url"], headers={**auth(), "Content-Type": "application/json"}, content=raw)
    assert response.status_code == 400 and response.json()["detail"].startswith("temperature: ")


@pytest.mark.slow
def test_prompt_longer_than_the_context_is_400(server):
    start = time.monotonic()
    response = chat(server, messages=[{"role": "user", "content": "ab " * 200_000}])
    assert response.status_code == 400 and response.json()["detail"].startswith("messages: ")
    assert time.monotonic() - start < 10
    answered_quickly(server)


@pytest.mark.slow
def test_checks_come_after_the_key(server):
    assert chat(server, key="wrong", temperature=-1).status_code == 401


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_disconnect_stops_the_generation(server, stream):
    """A 2000-token answer (seconds of CPU on the tiny model) abandoned by its client: the server goes idle."""
    body = {"model": "tiny", "messages": HELLO, "max_tokens": 2000, "temperature": 1.5, "stream": stream}
    with (
        contextlib.suppress(httpx.ReadTimeout),
        httpx.stream("POST", server["url"], headers=auth(), json=body, timeout=1.5) as response,
    ):
        for i, _ in enumerate(response.iter_lines()):
            if i == 3:
                break
    time.sleep(1)
    before = cpu_seconds(server["pid"])
    time.sleep(3)
    assert cpu_seconds(server["pid"]) - before < 0.5  # nothing is generating any more
    answered_quickly(server)


@pytest.mark.slow
def test_queue_is_bounded(server):
    """One request generating, API_MAX_QUEUE=2 waiting: the rest are told 429 at once, none waits without end."""
    start = time.monotonic()
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda _: chat(server, timeout=90, max_tokens=300, temperature=1.5), range(12)))
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {200, 429} and 200 in codes and codes.count(429) >= 6, codes
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["retry-after"] and "API_MAX_QUEUE" in refused.json()["detail"]
    assert time.monotonic() - start < 90
    answered_quickly(server)
