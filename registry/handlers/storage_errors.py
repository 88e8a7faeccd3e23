"""The one place where a storage error that reached a handler becomes what the client sees.

Storage raises storage errors only (:mod:`registry.storage.driver`); which OCI error, status and
``Retry-After`` each one means is decided here, so that a client retries what may pass (503, 429) and
not a bug (500):

================================  ======  ===================  ====================================
storage error                     status  code                 why
================================  ======  ===================  ====================================
``StorageThrottledError``         429     ``TOOMANYREQUESTS``  the backend limits the request rate
``StorageUnavailableError``       503     ``UNAVAILABLE``      the backend failed in a way that may
                                                               pass (connection, timeout, its 5xx)
``PathNotFoundError``             503     ``UNAVAILABLE``      a path vanished while the request ran
                                                               (a concurrent delete or purge): a
                                                               retry sees a consistent state
``QuotaExceededError``            403     ``DENIED``           a quota rule refuses the push (its
                                                               message names limit and usage)
``CorruptLinkError``              500     ``UNKNOWN``          stored data is damaged: an operator
                                                               must repair it
any other ``StorageError``        500     ``UNKNOWN``          a driver bug, or an error the driver
                                                               did not classify
================================  ======  ===================  ====================================

The 500s are reported through ``registry_report_exception``; the others are the backend's weather,
logged only.
"""

from __future__ import annotations

import math

from registry.errors import Denied, InternalError, RegistryError, TooManyRequests, Unavailable
from registry.storage.driver import PathNotFoundError, StorageError, StorageThrottledError, StorageUnavailableError
from registry.storage.store import CorruptLinkError, QuotaExceededError

#: Seconds a client is asked to wait when the backend gave no hint of its own.
DEFAULT_RETRY_AFTER = 1


def _retry_after(exc: StorageUnavailableError) -> dict[str, str]:
    hint = exc.retry_after
    seconds = DEFAULT_RETRY_AFTER if hint is None or not hint > 0 else math.ceil(min(hint, 3600))
    return {"Retry-After": str(seconds)}


def registry_error_for(exc: StorageError) -> tuple[RegistryError, bool]:
    """The OCI error a client gets for ``exc``, and whether it is a fault worth reporting (a 500).

    Messages name the kind of failure, never the driver's own text: that may hold bucket names,
    endpoints or credentials in URLs, and goes to the log instead.
    """
    if isinstance(exc, StorageThrottledError):
        return TooManyRequests("the storage backend is throttling requests: slow down and retry",
                               headers=_retry_after(exc)), False
    if isinstance(exc, StorageUnavailableError):
        return Unavailable("the storage backend is unavailable, retry later", headers=_retry_after(exc)), False
    if isinstance(exc, PathNotFoundError):
        return Unavailable("storage changed while the request was served, retry",
                           headers={"Retry-After": str(DEFAULT_RETRY_AFTER)}), False
    if isinstance(exc, QuotaExceededError):
        return Denied(str(exc), detail=exc.detail), False
    if isinstance(exc, CorruptLinkError):
        return InternalError("the registry's storage holds a damaged link file; the operator must repair it"), True
    return InternalError(f"internal storage error ({type(exc).__name__})"), True


__all__ = ["DEFAULT_RETRY_AFTER", "registry_error_for"]
