"""Prometheus metrics for the registry: ``http.debug.prometheus`` (see ``docs/prometheus.md``)."""
