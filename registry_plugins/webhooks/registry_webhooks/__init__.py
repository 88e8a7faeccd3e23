"""Webhook notifications: Distribution's ``notifications.endpoints``, delivered from a durable queue.

:func:`metrics` is the API a metrics plugin reads (pending, delivered, failed, retries, dropped per
endpoint); ``/debug/webhooks`` on the debug listener serves the same as JSON.
"""

from __future__ import annotations

from registry_webhooks.notifier import ENVELOPE_MEDIA_TYPE, metrics

__all__ = ["ENVELOPE_MEDIA_TYPE", "metrics"]
