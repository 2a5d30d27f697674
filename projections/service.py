"""The read side as the service runs it: one ClickHouse engine for the process, a follower
thread that catches up after each stored batch, the clients the KPI routes read through, and
ClickHouse's HTTP interface for BI tools.

chDB allows one data directory per process and one process per data directory, so on the
embedded profile the service owns the engine (uvicorn runs one worker) and everything else
reads through it: KPIs over the API, BI tools over the HTTP interface, ``replay --projections``
through an admin route. Within the process the follower, the KPI reader and the BI interface
each have their own connection to the one engine.

The follower never runs on the processor's thread: ``wake()`` (called after each stored batch)
only sets an event; the follower thread reads the notification log (``read``) and writes. So
ingest never waits for ClickHouse. A catch-up has a fixed cost (some tenths of a second of the
engine's time, for the inserts and the summaries) whatever it brings in, so under a steady
stream of events the follower takes them ``interval`` seconds at a time: the KPI tables trail
the store by one to two seconds, and the follower takes well under one core.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from projections.bi_http import BiServer, Credentials, read_only_settings
from projections.client import connect, is_embedded, open_projections
from projections.follower import Follower, Progress, Reader, rebuild
from projections.writer import Writer

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BiAccess:
    """Where and to whom the ClickHouse HTTP interface is served."""

    host: str
    port: int
    credentials: Credentials


class ProjectionService:
    """Owns the projection engine of a service process.

    ``read(start)`` yields the store's notifications from id ``start`` on
    (``EventStore.notifications``), ``last_id()`` the id of the last one.
    """

    def __init__(self, dsn: str, database: str, read: Reader, last_id: Callable[[], int],
                 bi: BiAccess | None = None, bi_off: str = "", batch_size: int = 20_000,
                 interval: float = 1.0, poll: float = 5.0, niceness: int = 10) -> None:
        self.dsn, self.database = dsn, database
        self.read, self.last_id = read, last_id
        self.bi, self.bi_off = bi, bi_off
        self.batch_size, self.interval, self.poll = batch_size, interval, poll
        self.niceness = niceness
        self.client: Any = None  # the follower's
        self.reader: Any = None  # the KPI routes'
        self._helper: Any = None
        self._bi_client: Any = None
        self._bi_server: Any = None
        self._bi_thread: threading.Thread | None = None
        self._follower: Follower | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one writer at a time: the follower or a rebuild
        self._lock_calls = threading.Lock()
        self._in_flight: set[Future[Any]] = set()
        # The API's calls into the engine (KPI queries, status, rebuilds) run on these threads,
        # at the follower's lowered priority: the engine's thread pools grow from the thread
        # that hands them work, and a thread started from a request's thread would run at
        # ingest's priority.
        self._calls: ThreadPoolExecutor | None = None  # (made at the first call, shut down by ``stop``)
        self.rebuilding = False
        self.last_error: str | None = None

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Open the engine, migrate the schema, start following (and serving BI tools); returns
        once they are open, raising what stopped them.

        All of it is opened on the follower's thread after it lowered its CPU priority by
        ``niceness`` (``lower_priority``): the engine's own threads (inserts, merges, queries)
        and the BI interface's start from it and inherit that priority. On a machine whose cores
        are busy, ingest then comes first and the read side takes what is left, so a catch-up
        or a BI query does not hold up the answers to scanners (README, "Performance")."""
        self._stop.clear()
        opened: queue.Queue[BaseException | None] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._run, args=(opened,), name="projection-follower",
                                        daemon=True)
        self._thread.start()
        failure = opened.get()
        if failure is not None:
            self._thread.join(timeout=60)
            raise failure
        self.wake()

    def _run(self, opened: queue.Queue[BaseException | None]) -> None:
        lower_priority(self.niceness)
        try:
            self.client = open_projections(self.dsn, self.database)
            self.reader = connect(self.dsn, self.database, create=False)
            self._helper = connect(self.dsn, self.database, create=False)
            self._follower = Follower(self.client, batch_size=self.batch_size,
                                      writer=Writer(self.client, [self._helper]))
            self._start_bi()
        except BaseException as exc:
            self._close_clients()  # (the engine's data directory stays locked while one is open)
            opened.put(exc)
            return
        opened.put(None)
        self._follow()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        if self._bi_server is not None:
            self._bi_server.should_exit = True
        if self._bi_thread is not None:
            self._bi_thread.join(timeout=15)
        with self._lock_calls:  # calls in flight finish on the open clients (a minute at most, as
            calls, self._calls = self._calls, None  # the threads above); queued ones are dropped
            in_flight = list(self._in_flight)
        if calls is not None:
            calls.shutdown(wait=False, cancel_futures=True)
            _, hung = futures.wait(in_flight, timeout=60)
            if hung:
                log.warning("%d calls into the projection engine still running at stop", len(hung))
            else:
                calls.shutdown(wait=True)  # (nothing runs: its threads end now)
        if self._follower is not None:
            self._follower.writer.close()
        self._close_clients()

    def _close_clients(self) -> None:
        # The first client last: closing the engine's last handle shuts the engine down.
        for c in (self._bi_client, self.reader, self._helper, self.client):
            if c is not None:
                try:
                    c.close()
                except Exception:  # pragma: no cover - closing is best effort at shutdown
                    log.debug("closing a projection client failed", exc_info=True)
        self._bi_client = self.reader = self._helper = self.client = None

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        """Run ``fn(*args)`` (a call into the engine: a KPI query, ``status``, ``rebuild``) on
        one of the service's low-priority threads; an async caller awaits
        ``asyncio.wrap_future`` of the result."""
        with self._lock_calls:
            if self._calls is None:
                self._calls = ThreadPoolExecutor(max_workers=4, thread_name_prefix="projections-call",
                                                 initializer=lower_priority, initargs=(self.niceness,))
            future = self._calls.submit(fn, *args)
            self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)
        return future

    def wake(self) -> None:
        """New events are stored: catch up soon (never on the caller's thread)."""
        self._wake.set()

    # -- following --------------------------------------------------------------------------
    def _follow(self) -> None:
        assert self._follower is not None
        while not self._stop.is_set():
            self._wake.wait(self.poll)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                try:
                    self._follower.catch_up(self.read)
                    self.last_error = None
                except Exception as exc:  # keep following: the next wake retries from the position
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.exception("projections: catching up failed; retrying")
                    self._stop.wait(1.0)
            # Let events gather: each catch-up has a fixed cost, so bursts are taken together.
            self._stop.wait(self.interval)

    def status(self) -> dict[str, Any]:
        """How far the projections are: the last notification written and the last stored."""
        rows = self.reader.query(
            "SELECT position FROM projection_positions WHERE follower = 'projections' "
            "ORDER BY seq DESC LIMIT 1").result_rows if not self.rebuilding else []
        return {"position": int(rows[0][0]) if rows else 0, "stored": int(self.last_id()),
                "rebuilding": self.rebuilding, "error": self.last_error}

    def rebuild(self, on_batch: Callable[[Progress], None] | None = None) -> Progress:
        """Drop every table, create them again and write the whole log (the follower waits)."""
        with self._lock:
            self.rebuilding = True
            try:
                return rebuild(self.client, self.read, batch_size=200_000, on_batch=on_batch,
                               helpers=[self._helper])
            finally:
                self.rebuilding = False

    # -- BI access ----------------------------------------------------------------------------
    def _start_bi(self) -> None:
        if self.bi is None:
            log.warning("BI access is off: %s", self.bi_off or "no credentials")
            return
        if not is_embedded(self.dsn):
            log.warning("BI access: the projections are on a ClickHouse server (%s); point BI tools "
                        "at that server, the service does not serve its HTTP interface", _redacted(self.dsn))
            return
        import uvicorn

        self._bi_client = connect(self.dsn, self.database, create=False, settings=read_only_settings())
        server = BiServer(self._bi_client, self.database, self.bi.credentials)
        # No logging configuration of its own: the service's uvicorn has configured it.
        config = uvicorn.Config(server.app, host=self.bi.host, port=self.bi.port, log_config=None,
                                log_level=None, access_log=False, lifespan="off")
        self._bi_server = uvicorn.Server(config)
        self._bi_thread = threading.Thread(target=self._bi_server.run, name="bi-http", daemon=True)
        self._bi_thread.start()
        deadline = time.monotonic() + 15
        while not self._bi_server.started and self._bi_thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._bi_server.started:
            log.warning("BI access: ClickHouse HTTP interface on http://%s:%d (database %s, user %s, "
                        "read-only)", self.bi.host, self.bi.port, self.database, self.bi.credentials.user)
        else:
            log.error("BI access: could not serve the ClickHouse HTTP interface on %s:%d (is the port "
                      "in use? set REPLENISH_CLICKHOUSE_HTTP_PORT); the service runs without it",
                      self.bi.host, self.bi.port)

    @property
    def bi_serving(self) -> bool:
        return bool(self._bi_server is not None and self._bi_server.started
                    and self._bi_thread is not None and self._bi_thread.is_alive())


def lower_priority(niceness: int) -> None:
    """Lower the calling thread's CPU priority by ``niceness`` (at most to 19). On Linux the
    nice value belongs to each thread and the threads it starts inherit it; elsewhere, or when
    the system refuses, nothing changes."""
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + niceness))
    except OSError:  # pragma: no cover - a system that does not allow it: run at the usual priority
        log.debug("could not lower the projections' CPU priority", exc_info=True)


def _redacted(dsn: str) -> str:
    from urllib.parse import urlparse

    parsed = urlparse(dsn)
    if parsed.password:
        return parsed._replace(netloc=f"{parsed.username}:***@{parsed.hostname}:{parsed.port}").geturl()
    return dsn
