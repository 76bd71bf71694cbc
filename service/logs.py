"""Server logging: ``--log-format text`` for people, ``json`` (one object per line) for log pipelines.

Each finished call is logged once, with its :meth:`CallRecord.fields` attached to the record; the
JSON formatter puts those fields at the top level, the text line names them ``key=value``.
"""

from __future__ import annotations

import json
import logging

from service.calls import CallRecord

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
CALL_LINE = (
    "rpc=%(method)s peer=%(peer)s model=%(model)s status=%(code)s duration_ms=%(duration_ms)s "
    "audio_s=%(audio_s)s rtf=%(rtf)s request_id=%(request_id)s"
)


class JsonFormatter(logging.Formatter):
    """A record as one JSON line: time, level, logger, message, a call's fields, any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "call", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(log_format: str, level: int = logging.INFO) -> None:
    """Send every log record to stderr in ``log_format`` (one of :data:`LOG_FORMATS`)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])


def log_call(logger: logging.Logger, call: CallRecord) -> None:
    fields = call.fields()
    logger.info(CALL_LINE, fields, extra={"call": fields})
