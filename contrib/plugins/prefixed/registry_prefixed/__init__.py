"""The ``prefixed`` storage middleware: the storage below, seen from below a prefix."""

from registry_prefixed.driver import PrefixedDriver

__all__ = ["PrefixedDriver"]
