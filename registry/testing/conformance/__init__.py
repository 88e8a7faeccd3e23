"""The storage driver conformance suite, exported for third-party drivers.

Two ways to run it against a driver:

* subclass :class:`DriverSuite` in your own tests and provide a ``driver`` fixture;
* run it installed, against any driver the plugin manager finds, with parameters from a YAML file::

      pytest --pyargs registry.testing.conformance \\
          --registry-storage-driver=NAME --registry-storage-config=FILE

See ``docs/storage-plugins.md``.
"""

from registry.testing.conformance.suite import DriverSuite

__all__ = ["DriverSuite"]
