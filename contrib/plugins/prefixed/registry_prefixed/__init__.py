"""The ``prefixed`` storage driver: another driver's storage, seen from below a prefix."""

from registry_prefixed.driver import PrefixedDriver

__all__ = ["PrefixedDriver"]
