"""probpipe: run probabilistic workflow functions over distributions and sweeps,
on pluggable execution backends, with seeds and provenance.

Importing probpipe imports none of prefect, dask or ray: a backend's engine is
imported the first time that backend is used.
"""

from ._backend import ExecutionBackend
from ._dispatch import CallInfo
from ._distributions import (
    Beta,
    BootstrapReplicateDistribution,
    Distribution,
    EmpiricalDistribution,
    Gamma,
    MixtureDistribution,
    MultivariateNormal,
    Normal,
    Uniform,
)
from ._errors import (
    BackendConnectionError,
    BackendNotFoundError,
    BackendUnavailableError,
    CheckpointError,
    PluginConflictError,
    ProbpipeError,
    RemoteRowError,
    RowTimeoutError,
    WorkerLostError,
)
from ._hookspecs import hookimpl, hookspec
from ._per_worker import PerWorker, per_worker
from ._plan import Sweep, sweep
from ._provenance import Parent, Provenance, ProvenanceMode, provenance_config
from ._record import Record
from ._registry import BackendInfo
from ._results import ItemsResult, SweepResult
from ._selection import available_backends, current_backend, use_backend
from ._version import __version__
from ._worker import SharedRef
from ._workflow import WorkflowFunction, workflow_function


def register_plugin(plugin, name=None):
    """Register an in-process plugin (observer hooks, or backends) with probpipe."""
    from ._registry import registry

    registry.register_plugin(plugin, name)


def unregister_plugin(plugin):
    """Remove a plugin registered with :func:`register_plugin`."""
    from ._registry import registry

    registry.unregister_plugin(plugin)


__all__ = [
    "BackendConnectionError",
    "BackendInfo",
    "BackendNotFoundError",
    "BackendUnavailableError",
    "Beta",
    "BootstrapReplicateDistribution",
    "CallInfo",
    "CheckpointError",
    "Distribution",
    "EmpiricalDistribution",
    "ExecutionBackend",
    "Gamma",
    "ItemsResult",
    "MixtureDistribution",
    "MultivariateNormal",
    "Normal",
    "Parent",
    "PerWorker",
    "PluginConflictError",
    "ProbpipeError",
    "Provenance",
    "ProvenanceMode",
    "Record",
    "RemoteRowError",
    "RowTimeoutError",
    "SharedRef",
    "Sweep",
    "SweepResult",
    "Uniform",
    "WorkerLostError",
    "WorkflowFunction",
    "__version__",
    "available_backends",
    "current_backend",
    "hookimpl",
    "hookspec",
    "per_worker",
    "provenance_config",
    "register_plugin",
    "sweep",
    "unregister_plugin",
    "use_backend",
    "workflow_function",
]
