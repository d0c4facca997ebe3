"""The execution-backend protocol and its base class.

A backend only translates "run this function on these items" to an engine.
Everything else (ordering, chunking, seeds, retries, the error policy,
progress, checkpoints) lives in the core, once.

Required by the protocol (API.md section 6): ``name``, ``provenance_tag``,
``__init__(**options)``, ``__enter__``, ``__exit__``, ``map``, ``gather``,
``describe``. Everything else below is optional: the core reads capability
flags with defaults, so a plain class with the required members works.
Subclassing :class:`ExecutionBackend` gives those defaults, option checking
and documentation for free.

The seam is narrow on purpose (httpx's transport, ``concurrent.futures``):
``map`` submits and hands back one handle per item; the core turns handles
into ``concurrent.futures.Future`` objects (see :mod:`probpipe._futures`) and
does all waiting, ordering, retrying and cancelling itself. A backend that
needs to wrap a whole call (Prefect: the call's flow run; Ray: the call's
resource hints) implements ``run_call``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from ._options import unknown_name_message
from ._worker import LocalRef, SharedRef


class ExecutionBackend:
    """Base class of execution backends; subclass it and fill in the engine calls.

    Class attributes:

    ``name``
        What :func:`probpipe.use_backend` takes.
    ``provenance_tag``
        Recorded as ``metadata["orchestrate"]`` (``"task"`` for Prefect).
    ``description`` / ``install_hint`` / ``requires``
        Shown by :func:`probpipe.available_backends`; ``requires`` lists the
        importable modules the backend needs (checked without importing).
    ``option_defaults``
        Every option the backend accepts, with its default. Unknown options
        are rejected by ``__init__`` with a suggestion.

    Capability flags (read by the core, all optional):

    ``ships_to_processes``
        Items and functions are pickled to other processes; the core checks
        every argument is picklable before anything is dispatched.
    ``default_chunksize``
        What ``chunksize=None`` means here (``"auto"`` or an int).
    ``task_overhead``
        Rough seconds of overhead per engine task; auto chunking sizes chunks
        to be well above it.
    ``supports_timeout``
        Rows run on a process's main thread, where ``timeout=`` can interrupt
        them (even inside blocking calls). Without it, a call with
        ``timeout=`` is refused before anything is dispatched: a row running
        on a worker thread cannot be stopped safely.
    """

    name: ClassVar[str] = ""
    provenance_tag: ClassVar[str] = "task"
    description: ClassVar[str] = ""
    install_hint: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    option_defaults: ClassVar[dict[str, Any]] = {}

    ships_to_processes: ClassVar[bool] = True
    default_chunksize: ClassVar[int | str] = "auto"
    task_overhead: ClassVar[float] = 0.005
    supports_timeout: ClassVar[bool] = False

    def __init__(self, **options: Any):
        for key in options:
            if key not in self.option_defaults:
                raise TypeError(
                    unknown_name_message(
                        "option", key, list(self.option_defaults), owner=f"backend {self.name!r}"
                    )
                )
        self.options: dict[str, Any] = {**self.option_defaults, **options}
        self.validate_options()

    def validate_options(self) -> None:
        """Check ``self.options``; raise TypeError/ValueError naming the bad one.

        Called by ``__init__``, so it runs when ``use_backend`` is called,
        before any engine is started.
        """

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> ExecutionBackend:
        """Start, or attach to, whatever the backend needs. Called once, lazily."""
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Stop only what ``__enter__`` started; leave attached clusters running."""

    # -- the narrow interface ------------------------------------------------
    def map(self, fn: Any, items: list[Any]) -> list[Any]:
        """Submit ``fn(item)`` for every item; return one handle per item, in order.

        Must not block until the items finish. ``fn`` is a module-level
        function (picklable by reference); items are small. A handle that is a
        ``concurrent.futures.Future`` is waited on and cancelled directly
        (its ``cancel`` should stop the engine's task if it can: see
        :func:`probpipe._futures.follow`); any other handle is read with
        :meth:`gather`, one at a time, in submission order.
        """
        raise NotImplementedError

    def gather(self, handles: list[Any]) -> list[Any]:
        """Block until ``handles`` finish; return their results in handle order.

        If an item failed, raise its exception (the original type where the
        engine keeps it).
        """
        raise NotImplementedError

    def share(self, value: Any, key: str) -> SharedRef:
        """Make ``value`` available to workers once; return a handle to ship instead.

        The default ships the value with the call, which is correct but
        sends it again with every task. ``key`` is a content fingerprint.
        """
        return LocalRef(value, key)

    def run_call(self, call: Any, body: Callable[[Callable, int], Any]) -> Any:
        """Run one probpipe call: ``body(submit, parallelism)``, on the calling thread.

        ``call`` is the frozen :class:`probpipe.CallInfo` (function name, rows,
        the call's options such as ``resources``). ``submit`` has the
        signature of :meth:`map`; ``parallelism`` is how many items can run
        at once for this call. Return what ``body`` returns and let its
        exceptions through. Override to wrap the call in an engine scope
        (the Prefect adapters run ``body`` inside the call's flow run) or to
        submit with per-call settings; raising before ``body`` runs fails
        the call before anything is submitted.
        """
        return body(self.map, self.parallelism())

    def parallelism(self) -> int:
        """How many items can run at once (workers x slots). Called after start."""
        return 1

    def is_worker_lost(self, exc: BaseException) -> bool:
        """True if ``exc``, an item's failure, means the item's process died."""
        return False

    def describe(self) -> dict[str, Any]:
        """JSON-safe details for provenance (options, addresses, versions)."""
        return dict(self.options)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"<{type(self).__name__} {self.name!r} {opts}>"
