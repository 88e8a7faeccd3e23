import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # the server fixtures are imported by name under any --import-mode
    sys.path.insert(0, _HERE)

from s3_servers import moto_server, rgw_server, s3_server  # noqa: E402,F401  (fixtures, registered by import)
