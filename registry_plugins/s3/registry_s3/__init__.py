"""The ``s3`` storage driver: Amazon S3 and S3-compatible object stores (Ceph RGW, MinIO, moto), on boto3."""
