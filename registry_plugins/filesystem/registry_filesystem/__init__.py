"""The ``filesystem`` storage driver: files under a root directory, in Distribution's layout."""

from registry_filesystem.driver import DEFAULT_MAX_THREADS, DEFAULT_ROOT, TEMP_DIR, FilesystemDriver

__all__ = ["DEFAULT_MAX_THREADS", "DEFAULT_ROOT", "TEMP_DIR", "FilesystemDriver"]
