"""The conformance suite on every shipped engine adapter, on real engines.

Each backend is started once for the whole session (``shared_backend``):
the Prefect API in a temporary PREFECT_HOME, a local Dask cluster of worker
processes, a local Ray, all bound to 127.0.0.1.
"""

import pytest

from probpipe.testing import BackendConformance


@pytest.mark.prefect
class TestPrefect(BackendConformance):
    backend_name = "prefect"


@pytest.mark.prefect
class TestPrefectThreads(BackendConformance):
    backend_name = "prefect"
    backend_options = {"max_workers": 2}


@pytest.mark.dask
class TestPrefectDask(BackendConformance):
    backend_name = "prefect-dask"


@pytest.mark.ray
class TestPrefectRay(BackendConformance):
    backend_name = "prefect-ray"
