"""Azure Blob Storage driver for the registry (driver name ``azure``); see ``docs/azure.md``."""
