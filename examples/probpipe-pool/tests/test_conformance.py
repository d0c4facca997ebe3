"""The pool backend passes probpipe's conformance suite, and checks its own options."""

import pytest

import probpipe as pp
from probpipe.testing import BackendConformance


class TestPoolBackend(BackendConformance):
    backend_name = "pool"
    backend_options = {"max_workers": 2}


def test_registered_through_the_entry_point():
    info = pp.available_backends()["pool"]
    assert info.installed and info.provenance_tag == "pool"
    assert info.source.startswith("probpipe-pool")


@pytest.mark.parametrize(
    "bad, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("2", TypeError)]
)
def test_bad_max_workers_is_refused_before_anything_starts(bad, error):
    with pytest.raises(error, match="max_workers"):
        pp.use_backend("pool", max_workers=bad)
