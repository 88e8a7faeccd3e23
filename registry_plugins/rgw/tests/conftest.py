import sys
from pathlib import Path

# The s3 plugin's server fixtures (radosgw and moto launched from contrib/dev/) serve these tests too.
_S3_TESTS = str(Path(__file__).resolve().parents[2] / "s3" / "tests")
if _S3_TESTS not in sys.path:
    sys.path.insert(0, _S3_TESTS)

from s3_servers import rgw_server  # noqa: E402,F401  (a fixture, registered by import)
