"""A reference token server for the registry (the Docker token authentication spec)."""
