"""Test-session set-up: private Prefect home, no telemetry, shared engines.

Engines (the Prefect API, Ray, Dask) are started at most once per session
through ``probpipe.testing.shared_backend`` and stopped at session end by
the ``probpipe.testing`` pytest plugin. External clusters for attach-mode
tests are started by fixtures in ``tests/clusters.py`` and stopped by
process id.
"""

from __future__ import annotations

import os
import tempfile

# Set before anything imports prefect or ray: tests never touch ~/.prefect,
# never talk to a user's server, never send telemetry.
_HOME = tempfile.mkdtemp(prefix="probpipe-tests-prefect-")
os.environ["PREFECT_HOME"] = _HOME
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PROBPIPE_BACKEND", None)
os.environ.pop("RAY_ADDRESS", None)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

import pytest  # noqa: E402

import probpipe as pp  # noqa: E402
from probpipe import _selection  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_backend_choice():
    """Each test starts with no process-wide backend choice (the default is sequential)."""
    yield
    with _selection._lock:
        leftover = _selection._process_wide
    if leftover is not None:
        _selection.reset_for_tests()


@pytest.fixture
def provenance_mode():
    """Restore the provenance mode a test changes."""
    before = pp.provenance_config.mode
    yield pp.provenance_config
    pp.provenance_config.mode = before
