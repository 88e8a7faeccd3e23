"""Bugsnag error reporting for the registry: ``reporting.bugsnag`` (see ``docs/bugsnag.md``)."""
