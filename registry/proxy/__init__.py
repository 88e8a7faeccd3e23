"""The pull-through cache (``proxy:``): a client of each upstream (:mod:`~registry.proxy.remote`) and
the caching layer the handlers consult for a repository an upstream serves (:mod:`~registry.proxy.cache`).

Below the handlers: nothing here imports Falcon.
"""

from registry.proxy.cache import PullThroughCache
from registry.proxy.settings import DEFAULT_TTL, ProxySettings, Remote, proxy_problems, proxy_settings

__all__ = ["DEFAULT_TTL", "ProxySettings", "PullThroughCache", "Remote", "proxy_problems", "proxy_settings"]
