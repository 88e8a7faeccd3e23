"""Configuration: Distribution's ``config.yml``, ``REGISTRY_*`` overrides, schema composition, validation.

The file format is CNCF Distribution's (``version: 0.1``) so that an existing ``config.yml`` loads
unchanged. Loading happens in a fixed order, one module each:

1. :mod:`~registry.config.load` reads the YAML file (or the embedded default when there is none)
   and normalises it;
2. :mod:`~registry.config.schema` composes the JSON schema: ``registry/schemas/config.json`` plus each
   installed storage driver's schema at ``storage.<name>``, each access controller's at
   ``auth.<name>`` and each ``registry_config_schemas()`` fragment at its dotted path;
3. :mod:`~registry.config.env` applies ``REGISTRY_<SECTION>_<KEY>`` environment variables, resolving
   their words against that schema;
4. :mod:`~registry.config.validate` validates everything, collecting *all* errors, each prefixed with
   its dotted path;
5. :mod:`~registry.config.settings` builds the core's typed :class:`Settings` and names the keys
   nothing acts on.

:func:`load_config` does all of it and returns a :class:`Config` (a ``dict``: plugins read their own
sections from it; ``config.settings`` is the core's typed view). :mod:`~registry.config.builders`
creates the storage driver and access controller the configuration names.
"""

from registry.config.builders import build_access_controller, build_storage, describe_storage
from registry.config.durations import parse_duration
from registry.config.env import CONFIGURATION_PATH_ENV, DATA_DIR_ENV, ENV_PREFIX, apply_env_overrides
from registry.config.load import DEFAULT_STORAGE_DRIVER, default_config, default_data_dir, load_config
from registry.config.model import NO_AUTH, STORAGE_KEYS, Config, ConfigError, KeyPath
from registry.config.schema import base_schema, config_schema
from registry.config.settings import (
    CORE_ACTS_ON,
    AuthSettings,
    HttpSettings,
    LogSettings,
    Settings,
    StorageSettings,
    auth_backend_name,
    auth_params,
    catalog_max_entries,
    delete_enabled,
    drain_timeout,
    http_addr,
    http_headers,
    http_net,
    http_prefix,
    log_level,
    not_acted_on,
    parse_addr,
    readonly_enabled,
    redirect_disabled,
    settings_of,
    storage_driver_name,
    storage_params,
)
from registry.config.validate import validate

__all__ = [
    "CONFIGURATION_PATH_ENV",
    "CORE_ACTS_ON",
    "DATA_DIR_ENV",
    "DEFAULT_STORAGE_DRIVER",
    "ENV_PREFIX",
    "NO_AUTH",
    "STORAGE_KEYS",
    "AuthSettings",
    "Config",
    "ConfigError",
    "HttpSettings",
    "KeyPath",
    "LogSettings",
    "Settings",
    "StorageSettings",
    "apply_env_overrides",
    "auth_backend_name",
    "auth_params",
    "base_schema",
    "build_access_controller",
    "build_storage",
    "catalog_max_entries",
    "config_schema",
    "default_config",
    "default_data_dir",
    "delete_enabled",
    "describe_storage",
    "drain_timeout",
    "http_addr",
    "http_headers",
    "http_net",
    "http_prefix",
    "load_config",
    "log_level",
    "not_acted_on",
    "parse_addr",
    "parse_duration",
    "readonly_enabled",
    "redirect_disabled",
    "settings_of",
    "storage_driver_name",
    "storage_params",
    "validate",
]
