"""The ``probpipe`` entry point of probpipe-ray: registers the ``"ray"`` backend.

probpipe imports this module the first time backends are looked up, so it
stays light: the backend module imports Ray only inside its methods.
"""

from __future__ import annotations

import probpipe


@probpipe.hookimpl
def probpipe_register_backends(register):
    from .backend import RayBackend

    register(RayBackend)
