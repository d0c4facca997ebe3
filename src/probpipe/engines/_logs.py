"""Engine log levels: quiet by default, one switch to see everything.

Set ``PROBPIPE_ENGINE_LOGS=INFO`` (or ``DEBUG``) before the backend starts to
see Prefect, Ray and Dask logs; the default is ``WARNING``. probpipe passes
the level to the worker processes it starts.
"""

from __future__ import annotations

import logging
import os

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


_ENGINES = ("prefect", "ray", "distributed", "uvicorn", "httpx", "asyncio")
# Prefect's background senders log under their class names; at exit they warn
# "Still processing items", which is housekeeping, not a problem to report.
_HOUSEKEEPING = ("EventsWorker", "APILogWorker")


def quiet_this_process() -> None:
    """Apply the level here: env defaults (read by engines at import) and loggers.

    Loggers the engines already configured (say, prefect was imported before
    probpipe started a backend) are set too, not just the environment.
    """
    for key, value in worker_env().items():
        os.environ.setdefault(key, value)
    level = getattr(logging, engine_log_level())
    for name in _ENGINES:
        logging.getLogger(name).setLevel(level)
    children = tuple(f"{engine}." for engine in _ENGINES)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        configured = isinstance(logger, logging.Logger) and 0 < logger.level < level
        if configured and name.startswith(children):
            logger.setLevel(level)
    if level >= logging.WARNING:
        for name in _HOUSEKEEPING:
            logging.getLogger(name).setLevel(logging.ERROR)
