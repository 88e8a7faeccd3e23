"""The ``rgw`` storage driver: Ceph Object Gateway (radosgw), on the ``s3`` driver."""
