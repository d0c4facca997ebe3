"""The shared conformance suite on the native Ray backend (a local Ray, started once)."""

import pytest

from probpipe.testing import BackendConformance


@pytest.mark.ray
class TestRay(BackendConformance):
    backend_name = "ray"
