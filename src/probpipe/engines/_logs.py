"""Engine log levels: quiet by default, one switch to see everything.

Set ``PROBPIPE_ENGINE_LOGS=INFO`` (or ``DEBUG``) before the backend starts to
see Prefect, Ray and Dask logs; the default is ``WARNING``. probpipe passes
the level to the worker processes it starts.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Iterator

ENV_VAR = "PROBPIPE_ENGINE_LOGS"
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def engine_log_level() -> str:
    """The level for engine logs, from ``PROBPIPE_ENGINE_LOGS`` (default WARNING)."""
    level = os.environ.get(ENV_VAR, "WARNING").strip().upper()
    if level not in _LEVELS:
        raise ValueError(f"{ENV_VAR} must be one of {', '.join(_LEVELS)}, got {level!r}")
    return level


def worker_env() -> dict[str, str]:
    """Environment for engine worker processes probpipe starts."""
    level = engine_log_level()
    return {
        "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", level),
        "RAY_LOGGER_LEVEL": os.environ.get("RAY_LOGGER_LEVEL", level.lower()),
        "DASK_LOGGING__DISTRIBUTED": os.environ.get("DASK_LOGGING__DISTRIBUTED", level.lower()),
        # No telemetry from processes probpipe starts.
        "RAY_USAGE_STATS_ENABLED": os.environ.get("RAY_USAGE_STATS_ENABLED", "0"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": os.environ.get(
            "PREFECT_SERVER_ANALYTICS_ENABLED", "false"
        ),
        "DO_NOT_TRACK": os.environ.get("DO_NOT_TRACK", "1"),
    }


# Loggers of engines probpipe starts itself; the user's own loggers and
# Prefect's run loggers are never touched.
_STARTED_ENGINES = ("ray", "distributed")


def quiet_this_process() -> None:
    """Quiet the engines probpipe starts, here and in the worker processes it starts.

    Environment defaults are read by processes probpipe spawns (Ray's and
    Dask's workers); in this process only Ray's and Dask's loggers get the
    level. Prefect's level stays the user's: probpipe's own flow runs are
    quieted on the console by :func:`own_run` instead.
    """
    for key, value in worker_env().items():
        if not key.startswith("PREFECT_"):
            os.environ.setdefault(key, value)
    level = getattr(logging, engine_log_level())
    for name in _STARTED_ENGINES:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < level:
            logger.setLevel(level)


_in_own_run: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "probpipe_own_run", default=False
)


class _DropOwnRunChatter(logging.Filter):
    """Drops Prefect's INFO and below about probpipe's own runs from the console."""

    def filter(self, record: logging.LogRecord) -> bool:
        return (
            record.levelno >= logging.WARNING
            or not record.name.startswith("prefect")
            or not _in_own_run.get()
        )


_CONSOLE_FILTER = _DropOwnRunChatter()


@contextlib.contextmanager
def own_run() -> Iterator[None]:
    """Mark the block as one of probpipe's calls: its run chatter stays off the console.

    The filter sits on Prefect's console handlers only, so the records still
    reach the Prefect API (and its UI); the mark is a context variable, so it
    follows the call into Prefect's worker threads and nothing else.
    """
    if engine_log_level() in ("DEBUG", "INFO"):
        yield
        return
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            console = isinstance(handler, logging.StreamHandler)
            if console and _CONSOLE_FILTER not in handler.filters:
                handler.addFilter(_CONSOLE_FILTER)
    token = _in_own_run.set(True)
    try:
        yield
    finally:
        _in_own_run.reset(token)


class _BelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


@contextlib.contextmanager
def without_info(logger_name: str) -> Iterator[None]:
    """Drop INFO and below logged directly on one logger for the block (housekeeping
    notices of a server probpipe starts and stops), leaving its level alone."""
    logger, drop = logging.getLogger(logger_name), _BelowWarning()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


@contextlib.contextmanager
def quiet_logger(name: str, level: int) -> Iterator[None]:
    """Raise one engine logger's level for the block (an engine probpipe started)."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(max(level, before))
    try:
        yield
    finally:
        logger.setLevel(before)
