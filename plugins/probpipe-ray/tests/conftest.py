"""Test-session set-up for probpipe-ray: one local Ray on 127.0.0.1, shared.

The environment is set before anything imports Ray. The Ray itself is started
once, by the first test that needs it, through ``probpipe.testing``'s shared
backends, and stopped by that pytest plugin when the session ends.
"""

from __future__ import annotations

import os

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # no telemetry
os.environ.pop("RAY_ADDRESS", None)  # never attach to a user's cluster by accident
os.environ.pop("PROBPIPE_BACKEND", None)

import pytest
import ray_rows

import probpipe as pp
from probpipe.testing import shared_backend


def pytest_configure(config):
    config.addinivalue_line("markers", "ray: needs a Ray instance")


@pytest.fixture
def ray_backend():
    """The session's shared "ray" backend, already started (by a one-row call)."""
    backend = shared_backend("ray")
    pp.WorkflowFunction(ray_rows.noisy, backend=backend, n_broadcast_samples=1)(pp.Normal(0, 1))
    return backend
