"""The ``rgw`` driver: :class:`registry_s3.driver.S3Driver` under its own name."""

from __future__ import annotations

from registry_s3.driver import S3Driver


class RGWDriver(S3Driver):
    """The s3 driver on Ceph's radosgw (see :mod:`registry_rgw.plugin` for what differs)."""

    name = "rgw"
