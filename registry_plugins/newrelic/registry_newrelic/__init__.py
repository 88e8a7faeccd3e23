"""New Relic APM for the registry: ``reporting.newrelic`` (see ``docs/newrelic.md``)."""
