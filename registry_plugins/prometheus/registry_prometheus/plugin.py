"""Prometheus metrics on the debug listener (``http.debug.prometheus``), as Distribution serves them.

The metrics (listed in ``docs/prometheus.md``) are fed by ``registry_request_finished`` and
``registry_storage_call``, and served by ``prometheus_client``'s WSGI app as a ``registry_routes``
route on the debug listener (``http.debug.addr``), at ``path`` (``/metrics``).

Several processes: with ``PROMETHEUS_MULTIPROC_DIR`` set in their environment (the same empty
directory for all, before they start), each writes its samples there and every process's page
shows the sum (``prometheus_client``'s multiprocess mode); a process marks itself gone at shutdown.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

import pluggy

from registry import hookimpl
from registry.plugins import options_of
from registry.routes import Route
from registry.routing import TEMPLATES

log = logging.getLogger(__name__)

#: The JSON schema of ``http.debug.prometheus``; it ships in the package, next to this module.
SCHEMA: Mapping[str, Any] = json.loads(resources.files(__package__).joinpath("schema.json").read_text("utf-8"))

#: Distribution's default ``http.debug.prometheus.path``.
DEFAULT_PATH = "/metrics"

#: The environment variable of ``prometheus_client``'s multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """The registry's metrics, made once per process in ``prometheus_client``'s default registry
    (where any other plugin's metrics join them on the same page)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter("registry_http_requests", "HTTP requests served, by method, route template and status.",
                                ["method", "route", "code"])
        self.duration = Histogram("registry_http_request_duration_seconds",
                                  "Time from the start of handling to the response being ready.", ["method", "route"])
        self.bytes_in = Counter("registry_http_request_size_bytes",
                                "Request body bytes received (declared Content-Length).", ["method", "route"])
        self.bytes_out = Counter("registry_http_response_size_bytes",
                                 "Response body bytes sent (0 for HEAD).", ["method", "route"])
        self.storage = Histogram("registry_storage_action_seconds",
                                 "Storage driver calls, by driver and operation.", ["driver", "action"])
        self.storage_errors = Counter("registry_storage_errors",
                                      "Storage driver calls that raised, by driver, operation and error type.",
                                      ["driver", "action", "error"])
        self.uploads = Gauge("registry_uploads_in_progress",
                             "Upload sessions started (POST 202) and not yet finished (PUT 201) or cancelled "
                             "(DELETE 204) through this process since it started.", multiprocess_mode="livesum")


class NotificationCollector:
    """The notification queues' gauges and counters, read from the webhooks plugin when it is
    installed (``registry_webhooks.metrics()``: this process's endpoints) at every scrape."""

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        try:
            from registry_webhooks import metrics as endpoint_metrics
        except ImportError:
            return
        families = {
            "pending": GaugeMetricFamily("registry_notifications_pending",
                                         "Events queued for an endpoint and not yet delivered.", labels=["endpoint"]),
            "queue_bytes": GaugeMetricFamily("registry_notifications_queue_bytes",
                                             "Bytes of the event bodies queued for an endpoint.", labels=["endpoint"]),
            "delivered": CounterMetricFamily("registry_notifications_delivered",
                                             "Events an endpoint accepted.", labels=["endpoint"]),
            "failed": CounterMetricFamily("registry_notifications_failed",
                                          "Delivery requests to an endpoint that failed.", labels=["endpoint"]),
            "retries": CounterMetricFamily("registry_notifications_retries",
                                           "Deliveries to an endpoint tried again.", labels=["endpoint"]),
            "dropped": CounterMetricFamily("registry_notifications_dropped",
                                           "Events dropped because an endpoint's queue was full.", labels=["endpoint"]),
        }
        for endpoint, values in sorted(endpoint_metrics().items()):
            for key, family in families.items():
                value = values.get(key)
                if isinstance(value, int | float):
                    family.add_metric([endpoint], value)
        yield from families.values()


_metrics: Metrics | None = None
#: What this process serves: ``None`` while ``http.debug.prometheus`` is not enabled.
_active: Metrics | None = None
_path = DEFAULT_PATH

#: The name under which :class:`Recorder` is registered while the metrics are enabled.
RECORDER = "prometheus.recorder"


def metrics() -> Metrics:
    """This process's :class:`Metrics`, made on first use (``prometheus_client`` refuses a second
    metric of one name in a registry, and several apps can be built in one process)."""
    global _metrics
    if _metrics is None:
        from prometheus_client import REGISTRY

        _metrics = Metrics()
        REGISTRY.register(NotificationCollector())
    return _metrics


def metrics_app() -> Callable[..., Any]:
    """The WSGI app serving the page: this process's samples, or every process's in multiprocess mode."""
    from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app

    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(NotificationCollector())  # each process's own queues: not summed
        return make_wsgi_app(registry)
    return make_wsgi_app(REGISTRY)


class Recorder:
    """The per-request and per-storage-call hooks, registered only while the metrics are enabled:
    installed and disabled, the plugin costs requests nothing (no timing wrapper, no hook call)."""

    def __init__(self, m: Metrics) -> None:
        self.m = m

    @hookimpl
    def registry_request_finished(self, method: str, route: str, status: int, duration: float, bytes_in: int,
                                  bytes_out: int) -> None:
        m = self.m
        template = TEMPLATES.get(route, route)
        m.requests.labels(method, template, str(status)).inc()
        m.duration.labels(method, template).observe(duration)
        if bytes_in:
            m.bytes_in.labels(method, template).inc(bytes_in)
        if bytes_out:
            m.bytes_out.labels(method, template).inc(bytes_out)
        if route == "uploads" and method == "POST" and status == 202:
            m.uploads.inc()
        elif route == "upload" and ((method == "PUT" and status == 201) or (method == "DELETE" and status == 204)):
            m.uploads.dec()

    @hookimpl
    def registry_storage_call(self, driver: str, operation: str, seconds: float, error: BaseException | None) -> None:
        self.m.storage.labels(driver, operation).observe(seconds)
        if error is not None:
            self.m.storage_errors.labels(driver, operation, type(error).__name__).inc()


@hookimpl
def registry_config_schemas() -> Mapping[str, Mapping[str, Any]]:
    return {"http.debug.prometheus": SCHEMA}


@hookimpl
def registry_configure(config: Mapping[str, Any], pm: pluggy.PluginManager) -> None:
    global _active, _path
    options = options_of(config, "http.debug.prometheus")
    registered = pm.get_plugin(RECORDER)
    if options.get("enabled") is not True:
        _active = None
        if registered is not None:
            pm.unregister(name=RECORDER)
        return
    _path = options.get("path") or DEFAULT_PATH
    _active = metrics()
    if registered is None:
        pm.register(Recorder(_active), name=RECORDER)
    if not options_of(config, "http.debug").get("addr"):
        log.warning("http.debug.prometheus is enabled but http.debug.addr is not set: no listener serves %s", _path)


@hookimpl
def registry_routes() -> list[Route] | None:
    if _active is None:
        return None
    return [Route(path=re.escape(_path), handler=metrics_app(), listener="debug", name="metrics")]


@hookimpl
def registry_shutdown() -> None:
    if _active is not None and os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        # The gauge's samples of a process that is gone would otherwise count forever (livesum).
        multiprocess.mark_process_dead(os.getpid())
