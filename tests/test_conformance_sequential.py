"""The conformance suite against the reference backend itself."""

from probpipe.testing import BackendConformance


class TestSequential(BackendConformance):
    backend_name = "sequential"
