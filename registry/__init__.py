"""A container registry speaking the OCI Distribution API, with pluggy-based plugins."""

import pluggy

__version__ = "0.1.0"

#: The pluggy project name; plugins mark their hook implementations with :data:`hookimpl`.
PROJECT = "registry"

hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["PROJECT", "__version__", "hookimpl"]
