"""Start-up and a PostgreSQL server that is not there yet: retried with backoff for
DATABASE_CONNECT_SECONDS, while a refusal (a database that does not exist) stops start-up at
once with one line, and SQLite never waits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from bot.startup import EXIT_DATABASE, StartupError, open_storage
from storage import Storage, StorageUnavailable
from tests.helpers.engines import SettingsFactory

pytestmark = pytest.mark.both_backends


@contextlib.contextmanager
def _closed_port() -> Iterator[socket.socket]:
    """A socket bound on 127.0.0.1 that does not listen (a connection there is refused), its
    port held while the block runs: no other test, worker or process can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


def _at_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.netloc.rpartition('@')[0]}@127.0.0.1:{port}"))


class Forwarder:
    """A TCP relay in front of PostgreSQL on the port of `sock` (bound): nothing listens there
    until `open()`, as with a server still starting; `freeze()` keeps the connections open but
    relays nothing more, as a server or a network that stopped answering."""

    def __init__(self, sock: socket.socket, target: tuple[str, int]) -> None:
        self._sock, self._target = sock, target
        self.port = int(sock.getsockname()[1])
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self, after: float = 0.0) -> None:
        await asyncio.sleep(after)
        self._server = await asyncio.start_server(self._forward, sock=self._sock)

    def freeze(self) -> None:
        self._flowing.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        for task in (self._pump(reader, upstream_writer), self._pump(upstream_reader, writer)):
            self._tasks.add(asyncio.create_task(task))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def forwarder(database_url: str) -> AsyncIterator[Forwarder]:
    parts = urlsplit(database_url)
    with _closed_port() as sock:
        relay = Forwarder(sock, (parts.hostname or "", parts.port or 5432))
        try:
            yield relay
        finally:
            await relay.close()


@pytest.mark.postgres_only
async def test_a_server_that_comes_up_late_is_waited_for(
    database_url: str, make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot")
    async with forwarder(database_url) as relay:
        url = _at_port(database_url, relay.port)
        settings = make_settings(DATABASE_URL=url, DATABASE_CONNECT_SECONDS=30)
        opening = asyncio.create_task(relay.open(after=1.5))
        storage = await open_storage(settings, asyncio.Event())
        await opening
        assert storage is not None
        try:
            assert await storage.db.integrity_ok()
        finally:
            await storage.close()
    waits = [r.getMessage() for r in caplog.records if "not reachable yet" in r.getMessage()]
    assert waits and all("trying again" in line for line in waits)


@pytest.mark.postgres_only
async def test_a_server_that_stops_answering_fails_the_statement(database_url: str) -> None:
    """Without a statement timeout a reply would wait forever on a dead connection."""
    async with forwarder(database_url) as relay:
        await relay.open()
        storage = await Storage.open(_at_port(database_url, relay.port) + "?command_timeout=1")
        try:
            assert await storage.db.integrity_ok()
            relay.freeze()
            with pytest.raises(StorageUnavailable):
                await asyncio.wait_for(storage.db.fetch_one("SELECT 1"), 20)
        finally:
            await storage.close()


@pytest.mark.postgres_only
async def test_a_server_never_reached_gives_up_with_one_line(
    database_url: str, make_settings: SettingsFactory
) -> None:
    with _closed_port() as sock:
        port = int(sock.getsockname()[1])
        url = _at_port(database_url.replace("postgres@", "postgres:hunter2@"), port)
        settings = make_settings(DATABASE_URL=url, DATABASE_CONNECT_SECONDS=1.5)
        with pytest.raises(StartupError) as error:
            await open_storage(settings, asyncio.Event())
    line = error.value.line
    assert error.value.status == EXIT_DATABASE
    assert "DATABASE_CONNECT_SECONDS" in line and "attempts" in line and "\n" not in line
    assert "hunter2" not in line


@pytest.mark.postgres_only
async def test_a_missing_database_is_refused_at_once(
    database_url: str, make_settings: SettingsFactory
) -> None:
    """The server answered: waiting would not help, so there is one attempt only."""
    missing = urlunsplit(urlsplit(database_url)._replace(path="/mnemo_no_such_database"))
    settings = make_settings(DATABASE_URL=missing, DATABASE_CONNECT_SECONDS=600)
    with pytest.raises(StartupError) as error:
        await asyncio.wait_for(open_storage(settings, asyncio.Event()), 60)
    assert error.value.status == EXIT_DATABASE
    assert "mnemo_no_such_database" in error.value.line and "attempts" not in error.value.line


@pytest.mark.postgres_only
async def test_stopping_while_waiting_returns_nothing(
    database_url: str, make_settings: SettingsFactory
) -> None:
    with _closed_port() as sock:
        url = _at_port(database_url, int(sock.getsockname()[1]))
        settings = make_settings(DATABASE_URL=url, DATABASE_CONNECT_SECONDS=600)
        stopping = asyncio.Event()
        asyncio.get_running_loop().call_later(1.0, stopping.set)
        assert await asyncio.wait_for(open_storage(settings, stopping), 30) is None


@pytest.mark.sqlite_only
async def test_sqlite_is_not_retried(tmp_path: Path, make_settings: SettingsFactory) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    settings = make_settings(DATABASE_URL=f"sqlite:///{folder}", DATABASE_CONNECT_SECONDS=600)
    with pytest.raises(StartupError) as error:
        await asyncio.wait_for(open_storage(settings, asyncio.Event()), 30)
    assert error.value.status == EXIT_DATABASE and "attempts" not in error.value.line
