"""Prefect adapters (placeholder while the core is brought up)."""

from .._backend import ExecutionBackend


class PrefectBackend(ExecutionBackend):
    name = "prefect"
    requires = ("prefect",)


class PrefectDaskBackend(ExecutionBackend):
    name = "prefect-dask"
    requires = ("prefect", "prefect_dask", "distributed")


class PrefectRayBackend(ExecutionBackend):
    name = "prefect-ray"
    requires = ("prefect", "prefect_ray", "ray")
