"""A Kafka worker's metrics port (``REPLENISH_METRICS_PORT``, issue 16 section 3): ``GET /metrics``
in the Prometheus text format (``streams.metrics.WorkerMetrics``), on ``REPLENISH_HOST``.

The rule is the API's ``/metrics``: no key from the addresses of ``REPLENISH_METRICS_ALLOW``
(default loopback), an auditor's or admin's key (``Authorization: Bearer KEY``) from anywhere
else. The keys are read again at each such request, so a changed ``REPLENISH_API_KEYS_FILE``
counts at once. A small threaded HTTP server of the standard library: a scrape never waits on
the worker's event loop or its processor thread (the gauges are set by them as they go)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from typing import Any

from api.deps import AUDITORS
from api.keys import find
from api.routes.ops import allowed_networks
from domain.intake import Principal
from streams.metrics import CONTENT_TYPE, ProcessMetrics

log = logging.getLogger(__name__)


class MetricsServer:
    def __init__(self, metrics: ProcessMetrics, host: str, port: int, allow: str,
                 principals: Callable[[], dict[str, Principal]]) -> None:
        self.metrics = metrics
        self.allow = allowed_networks(allow)
        self.principals = principals
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        self.httpd = server_class((host, port), self._handler())
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics", *self.httpd.server_address[:2])
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def refusal(self, client: str, authorization: str | None) -> tuple[int, str] | None:
        """None when ``client`` may read the metrics, else the status and the reason."""
        try:
            address = ip_address(client)
            address = getattr(address, "ipv4_mapped", None) or address  # (an IPv4 client of a dual-stack bind)
            if any(address in net for net in self.allow):
                return None
        except ValueError:
            pass
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return 401, "an auditor's or admin's API key is needed from this address (Authorization: Bearer KEY)"
        try:
            principal = find(self.principals(), key.strip())
        except Exception:  # (a key file that cannot be read: the log says why, never a key)
            log.exception("the API keys could not be read to check a metrics scrape")
            return 503, "the API keys cannot be read"
        if principal is None:
            return 401, "unknown API key"
        if principal.role not in AUDITORS:
            return 403, f"the role '{principal.role}' may not read the metrics (allowed: {', '.join(AUDITORS)})"
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # (seconds a connection may stay silent: an idle one does not hold a thread)

            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                if self.path.split("?")[0] != "/metrics":
                    return self._answer(404, b"not found: the worker serves /metrics only\n", "text/plain")
                refused = server.refusal(self.client_address[0], self.headers.get("Authorization"))
                if refused is not None:
                    extra = {"WWW-Authenticate": "Bearer"} if refused[0] == 401 else {}
                    return self._answer(refused[0], (refused[1] + "\n").encode(), "text/plain", extra)
                return self._answer(200, server.metrics.render(), CONTENT_TYPE)

            def _answer(self, status: int, body: bytes, content_type: str,
                        extra: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the standard library's name)
                pass  # (scrapes every few seconds would fill the worker's log)

        return Handler


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


__all__ = ["MetricsServer"]
