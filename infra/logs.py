"""Logs as text (the default) or JSON, one object a line (``REPLENISH_LOG_FORMAT=json``): the
time (UTC ISO), level, logger, message and, where the record carries them (``extra=``), the
event id and stock point, the exception's traceback as one string. Never a key: nothing logs
the settings' secrets (tests/e2e/test_metrics_http.py; a worker's: tests/integration/test_worker_metrics.py)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

CARRIED = ("event_id", "stock_point", "alert_id", "partition", "offset", "notification_id")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
                               "level": record.levelname.lower(), "logger": record.name,
                               "message": record.getMessage()}
        for name in CARRIED:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def log_config(fmt: str, level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` (and uvicorn ``log_config``) for ``fmt``: text or json."""
    formatter = {"()": f"{__name__}.JsonFormatter"} if fmt == "json" else {
        "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "default",
                                 "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["default"], "level": level},
        "loggers": {name: {"handlers": ["default"], "level": level, "propagate": False}
                    for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }


__all__ = ["JsonFormatter", "log_config"]
