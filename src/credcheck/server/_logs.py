"""The server's logs: JSON lines on standard error, one record a request and one for each event (docs/DEPLOY.md,
"Logs").

JSON lines rather than logfmt: a record is one JSON object on one line, so every field keeps its type (a status
is a number, a duration a float) and any value -- a path with spaces, quotes or ``=`` in it, an error message --
is escaped by a rule every log shipper, ``jq`` and Python's own ``json`` read alike; logfmt has no written
standard for its quoting, and each reader parses it its own way.

What a record may hold is fixed here and in :mod:`.telemetry`: the route's template (``/range/{prefix}``, never
the path), the method, the status, the bytes sent (rounded up to a power of two where the size of a body would
tell its prefix or bucket), the duration and the worker's pid; events name a store by its role (sha1, ntlm,
pairs) and its path. Never a prefix, a bucket, a query string, a header or anything derived from a password;
the client's address only when the operator asks for it (``serve --log-client-address``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Final

__all__ = ["ACCESS_LOGGER", "JsonLines", "access_record", "logging_config"]

#: The logger of the access records (one a request): its level turns them on and off.
ACCESS_LOGGER: Final = "credcheck.server.access"

# What every LogRecord holds: anything else on a record came from ``extra=`` and is one of the line's fields.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


_encode: Final = json.JSONEncoder(default=str).encode  # made once: json.dumps(..., default=) makes one a call


class _AccessRecord(logging.LogRecord):
    """A request's record, made without what :class:`logging.LogRecord` looks up for each record and an access
    record has no use for (the caller's file and function, the thread's and process's names, a ``getpid``
    system call): every attribute a record has (those of a template record), at half the cost, since one is
    made per request."""

    def __init__(self, fields: dict[str, object], args: tuple[object, ...], pid: int) -> None:
        now = time.time()
        attributes = self.__dict__
        attributes.update(_TEMPLATE)
        attributes.update(
            args=args,
            created=now,
            msecs=(now - int(now)) * 1000,
            relativeCreated=(now - _STARTED) * 1000,
            thread=threading.get_ident(),
            process=pid,
        )
        attributes.update(fields)
        self.fields = fields  # what JsonLines writes after the common fields, without looking for them


_STARTED: Final = time.time()
_TEMPLATE: Final = {
    **vars(logging.LogRecord(ACCESS_LOGGER, logging.INFO, "", 0, "%s %s %s", (), None)),
    "threadName": None,
    "processName": None,
}


def access_record(fields: dict[str, object], method: str, route: str, status: str, pid: int) -> logging.LogRecord:
    """The access record of one request: ``fields`` (its ``extra``), the message ``METHOD ROUTE STATUS``."""
    return _AccessRecord(fields, (method, route, status), pid)


class JsonLines(logging.Formatter):
    """A record as one JSON object on one line: ``ts`` (UTC, ISO 8601 to the millisecond), ``level``, ``logger``,
    ``pid``, the record's own fields (``extra=``: ``event`` and what it names), then ``msg``."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # a request's record costs no strftime: one a second
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        line: dict[str, Any] = {
            "ts": f"{self._stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
        }
        if type(record) is _AccessRecord:  # one a request: its fields are known
            line.update(record.fields)
        else:
            for name, value in record.__dict__.items():
                if name not in _STANDARD:
                    line[name] = value
        line["msg"] = record.getMessage()
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return _encode(line)


def logging_config(*, access_log: bool = True) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` of a serving process, its workers and the HTTP server's own loggers:
    every record a JSON line on standard error; credcheck's at INFO (its access records only with
    ``access_log``), granian's and gunicorn's and any other library's from WARNING."""

    def quiet() -> dict[str, Any]:  # one dict each: granian sets its logger's level in the dict it is given
        return {"level": "WARNING", "handlers": [], "propagate": True}

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonLines"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"level": "WARNING", "handlers": ["stderr"]},
        "loggers": {
            "credcheck": {"level": "INFO", "handlers": [], "propagate": True},
            ACCESS_LOGGER: {"level": "INFO" if access_log else "WARNING", "handlers": [], "propagate": True},
            # the servers' own: granian's access log is never on (it would log paths and addresses)
            "_granian": quiet(),
            "granian.access": quiet(),
            "gunicorn.error": quiet(),
            "gunicorn.access": quiet(),
        },
    }
