"""structlog, configured once: JSON lines when stderr is not a TTY, a readable console otherwise.

Log events carry ids, counts and codes only. Never pass a CPR number, a name,
a payload or free text written by an authority into a log call: the
``drop_personal_data`` processor is a last line of defence, not the policy.
"""

from __future__ import annotations

import logging
import sys

import structlog

# Keys that may hold personal data; their values are replaced before rendering.
_PERSONAL_KEYS = frozenset({"cpr", "name", "full_name", "payload", "necessity", "record", "body", "subject"})
_configured = False


def drop_personal_data(_logger, _method, event_dict):
    for key in _PERSONAL_KEYS.intersection(event_dict):
        event_dict[key] = "[redacted]"
    return event_dict


def configure(level: str = "INFO", *, json: bool | None = None) -> None:
    global _configured
    if _configured:
        return
    as_json = (not sys.stderr.isatty()) if json is None else json
    renderer = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            drop_personal_data,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # kafka-python logs through stdlib logging: its warnings (broker unreachable, rebalances)
    # come out in the same format as ours.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    _configured = True


def get_logger(name: str):
    return structlog.get_logger(name)
