"""The shipped backends. This module is the ``probpipe`` entry point of probpipe itself.

It imports no engine: each adapter imports Prefect, Dask or Ray inside its
methods, so looking backends up stays cheap.
"""

from __future__ import annotations

from .._hookspecs import hookimpl


@hookimpl
def probpipe_register_backends(register):
    from .prefect import PrefectBackend, PrefectDaskBackend, PrefectRayBackend
    from .sequential import SequentialBackend

    register(SequentialBackend)
    register(PrefectBackend)
    register(PrefectDaskBackend)
    register(PrefectRayBackend)
