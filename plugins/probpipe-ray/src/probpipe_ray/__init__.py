"""probpipe-ray: the native Ray backend for probpipe (``pp.use_backend("ray")``).

Installing this distribution registers the backend through the ``probpipe``
entry-point group; nothing here imports Ray until the backend is first used.
"""

from .backend import RayBackend

__version__ = "0.1.0"

__all__ = ["RayBackend"]
