"""A web UI for the registry (``ui:``): see docs/ui.md."""
