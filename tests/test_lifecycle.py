"""The lifecycle, route, health, WSGI-middleware and storage-call hooks, in process.

A pip-installed plugin using them through a real ``registry serve`` is tests/test_plugin_install.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import falcon
import falcon.testing
import pytest
import requests

from registry import hookimpl
from registry.app import RegistryApp, create_app
from registry.config import ConfigError
from registry.health import HealthCheck, PeriodicCheck
from registry.plugins import create_plugin_manager
from registry.routes import Route
from registry.serve import Server
from registry.storage.checked import CheckedDriver, ObservedDriver
from registry.storage.driver import PathNotFoundError, StorageError
from registry.storage.inmemory import InMemoryDriver
from registry.storage.purge import Purger
from tests.conftest import Pusher


class CountingClose(InMemoryDriver):
    """The in-memory driver, counting close() calls."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class FailingStat(InMemoryDriver):
    """A fake for a fault a real backend cannot produce on demand: stat('/') fails while ``failing``."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    def stat(self, path: str):
        if self.failing and path == "/":
            raise StorageError("backend unreachable (injected)")
        return super().stat(path)


class Lifecycle:
    """Records configure/startup/shutdown in order, into a list it may share with others."""

    def __init__(self, log: list[str], tag: str = "") -> None:
        self.log, self.tag = log, tag

    @hookimpl
    def registry_configure(self, config):
        self.log.append(f"configure{self.tag}")

    @hookimpl
    def registry_startup(self, app, config):
        assert isinstance(app, RegistryApp) and "storage" in config
        self.log.append(f"startup{self.tag}")

    @hookimpl
    def registry_shutdown(self):
        self.log.append(f"shutdown{self.tag}")


class Broken:
    @hookimpl
    def registry_startup(self, app):
        raise RuntimeError("cannot start")

    @hookimpl
    def registry_shutdown(self):
        raise RuntimeError("cannot stop")


def config(**extra) -> dict:
    return {"version": 0.1, "storage": {"inmemory": {}, "delete": {"enabled": True}}, **extra}


def app_with(*plugins, driver=None, cfg=None) -> RegistryApp:
    pm = create_plugin_manager(plugins=plugins)
    return create_app(cfg or config(), pm, driver=driver if driver is not None else InMemoryDriver())


# --- registry_configure, registry_startup, registry_shutdown ----------------------------------


def test_create_app_calls_configure_exactly_once_per_app():
    log: list[str] = []
    plugin = Lifecycle(log)
    pm = create_plugin_manager(plugins=[plugin])
    create_app(config(), pm, driver=InMemoryDriver())
    assert log == ["configure"]
    create_app(config(), pm, driver=InMemoryDriver())
    assert log == ["configure", "configure"]


def test_configure_can_refuse_to_start():
    class Refuse:
        @hookimpl
        def registry_configure(self, config):
            raise ConfigError(["hooktest: no"])

    with pytest.raises(ConfigError, match="hooktest: no"):
        app_with(Refuse())


def test_startup_and_shutdown_run_once_each_in_order_and_close_the_driver():
    log: list[str] = []
    driver = CountingClose()
    app = app_with(Lifecycle(log), driver=driver)
    assert log == ["configure"]
    app.startup()
    app.startup()
    assert log == ["configure", "startup"]
    assert driver.closed == 0
    app.shutdown()
    app.shutdown()
    assert log == ["configure", "startup", "shutdown"]
    assert driver.closed == 1


def test_the_app_is_a_context_manager():
    log: list[str] = []
    driver = CountingClose()
    with app_with(Lifecycle(log), driver=driver) as app:
        assert log[-1] == "startup"
        assert falcon.testing.TestClient(app).simulate_get("/v2/").status_code == 200
    assert log[-1] == "shutdown" and driver.closed == 1


def test_a_failing_plugin_stops_neither_the_others_nor_the_driver_closing():
    log: list[str] = []
    driver = CountingClose()
    app = app_with(Lifecycle(log, "-a"), Broken(), Lifecycle(log, "-b"), driver=driver)
    app.startup()
    app.shutdown()
    assert sorted(x for x in log if x.startswith("startup")) == ["startup-a", "startup-b"]
    assert sorted(x for x in log if x.startswith("shutdown")) == ["shutdown-a", "shutdown-b"]
    assert driver.closed == 1


def test_an_app_never_started_is_closed_without_shutdown_hooks():
    log: list[str] = []
    driver = CountingClose()
    app_with(Lifecycle(log), driver=driver).shutdown()
    assert log == ["configure"] and driver.closed == 1


def test_the_purger_starts_with_the_app_and_stops_with_it():
    app = app_with(cfg=config(storage={"inmemory": {}, "maintenance": {"uploadpurging": {
        "enabled": True, "age": "1h", "interval": "1h"}}}))
    purgers = [s for s in app.services if isinstance(s, Purger)]
    assert len(purgers) == 1 and not purgers[0].running
    app.startup()
    assert purgers[0].running
    started = time.monotonic()
    app.shutdown()
    assert not purgers[0].running
    assert time.monotonic() - started < 5  # not the hour it would otherwise sleep


def test_no_purger_when_purging_is_disabled():
    app = app_with(cfg=config(storage={"inmemory": {}, "maintenance": {"uploadpurging": {"enabled": False}}}))
    assert not [s for s in app.services if isinstance(s, Purger)]


def test_the_purger_purges_on_schedule_and_stops():
    driver = InMemoryDriver()
    driver.put_content("/docker/registry/v2/repositories/a/_uploads/u1/startedat", b"2000-01-01T00:00:00Z")
    purger = Purger(driver, age=3600, interval=3600, first_delay=0)
    purger.start()
    deadline = time.monotonic() + 10
    while purger.runs == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    purger.stop()
    assert purger.runs == 1 and not purger.running
    with pytest.raises(PathNotFoundError):
        driver.stat("/docker/registry/v2/repositories/a/_uploads/u1")


# --- registry_routes ------------------------------------------------------------------------------


class Hello:
    def __init__(self, word: str) -> None:
        self.word = word

    def on_get(self, req, resp, **params):
        resp.content_type = "text/plain"
        resp.text = f"{self.word} {params}"


def wsgi_hello(environ, start_response) -> Iterable[bytes]:
    start_response("202 Accepted", [("Content-Type", "text/plain"), ("X-Plugin", "yes")])
    return [b"wsgi ", environ["REQUEST_METHOD"].encode()]


class Routes:
    def __init__(self, *routes: Route) -> None:
        self.routes = list(routes)

    @hookimpl
    def registry_routes(self):
        return self.routes


def test_main_and_debug_routes_are_served_on_their_listener_only():
    app = app_with(Routes(
        Route(r"/ui/(?P<page>[a-z]+)", Hello("main")),
        Route(r"/metrics", wsgi_hello, listener="debug"),
    ))
    main, debug = falcon.testing.TestClient(app), falcon.testing.TestClient(app.debug_app)
    r = main.simulate_get("/ui/home")
    assert r.status_code == 200 and r.text == "main {'page': 'home'}"
    assert main.simulate_get("/metrics").status_code == 404
    r = debug.simulate_post("/metrics")
    assert r.status_code == 202 and r.text == "wsgi POST" and r.headers["X-Plugin"] == "yes"
    assert debug.simulate_get("/ui/home").status_code == 404
    assert debug.simulate_get("/v2/").status_code == 404  # the API is never on the debug listener
    assert main.simulate_get("/v2/").status_code == 200


@pytest.mark.parametrize("path", [r"/v2/plugin", r"/v2/.*", r"/(?:v2|x)/.*", r"/.*", r"/debug/health", r"nope"])
def test_routes_that_would_shadow_the_api_or_health_are_refused(path):
    with pytest.raises(ConfigError, match="route"):
        app_with(Routes(Route(path, Hello("x"))))


def test_a_plugin_failing_to_declare_routes_or_checks_does_not_stop_the_others():
    class Broken:
        @hookimpl
        def registry_routes(self):
            raise RuntimeError("no routes")

        @hookimpl
        def registry_health_checks(self):
            raise RuntimeError("no checks")

    app = app_with(Routes(Route(r"/ok", Hello("ok"))), Broken(), Checks(HealthCheck("fine", lambda: None)))
    assert falcon.testing.TestClient(app).simulate_get("/ok").text == "ok {}"
    assert [c.name for c in app.health_checks] == ["fine"]


def test_a_route_whose_handler_is_neither_resource_nor_wsgi_is_refused():
    with pytest.raises(ConfigError, match="neither a Falcon resource nor a WSGI"):
        app_with(Routes(Route(r"/x", 42)))


def test_a_plugin_route_error_gets_an_oci_error_body():
    class Boom:
        def on_get(self, req, resp):
            raise ZeroDivisionError("hidden")

    client = falcon.testing.TestClient(app_with(Routes(Route(r"/boom", Boom()))))
    r = client.simulate_get("/boom")
    assert r.status_code == 500 and r.json["errors"][0]["code"] == "UNKNOWN" and "hidden" not in r.text


# --- registry_health_checks -----------------------------------------------------------------------


class Checks:
    def __init__(self, *checks: HealthCheck) -> None:
        self.checks = list(checks)

    @hookimpl
    def registry_health_checks(self):
        return self.checks


def test_health_is_empty_json_when_healthy_and_names_each_failure():
    state = {"db": None, "queue": None}

    def check(name: str) -> Callable[[], None]:
        def run() -> None:
            if state[name]:
                raise RuntimeError(state[name])
        return run

    app = app_with(Checks(HealthCheck("db", check("db")), HealthCheck("queue", check("queue"))))
    debug = falcon.testing.TestClient(app.debug_app)
    r = debug.simulate_get("/debug/health")
    assert (r.status_code, r.json) == (200, {})
    state["db"] = "db down"
    state["queue"] = "queue full"
    r = debug.simulate_get("/debug/health")
    assert (r.status_code, r.json) == (503, {"db": "db down", "queue": "queue full"})
    main = falcon.testing.TestClient(app)
    r = main.simulate_get("/v2/")
    assert r.status_code == 503 and r.json["errors"][0] == {
        "code": "UNAVAILABLE", "message": "health check failed: please see /debug/health"}
    state["db"] = None
    r = debug.simulate_get("/debug/health")
    assert (r.status_code, r.json) == (503, {"queue": "queue full"})
    state["queue"] = None
    assert debug.simulate_get("/debug/health").status_code == 200
    assert main.simulate_get("/v2/").status_code == 200


def test_two_checks_with_one_name_are_refused():
    with pytest.raises(ConfigError, match="share a name"):
        app_with(Checks(HealthCheck("x", lambda: None), HealthCheck("x", lambda: None)))


def test_periodic_check_turns_unhealthy_after_threshold_consecutive_failures():
    outcomes = iter([None, "e1", None, "e2", "e3", "e4", None])

    def probe() -> None:
        error = next(outcomes)
        if error:
            raise RuntimeError(error)

    check = PeriodicCheck(probe, threshold=2)
    states = []
    for _ in range(7):
        check.run_once()
        try:
            check()
            states.append("ok")
        except Exception as exc:
            states.append(str(exc))
    # One failure is not enough; the second in a row is; one success clears it.
    assert states == ["ok", "ok", "ok", "ok", "e3", "e4", "ok"]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_storage_health_check_runs_in_a_thread_started_and_stopped_with_the_app():
    driver = FailingStat()
    cfg = config(health={"storagedriver": {"enabled": True, "interval": "10ms", "threshold": 3}})
    app = app_with(driver=driver, cfg=cfg)
    [check] = [c for c in app.health_checks if c.name == "storagedriver_inmemory"]
    debug = falcon.testing.TestClient(app.debug_app)
    app.startup()
    try:
        assert debug.simulate_get("/debug/health").json == {}
        driver.failing = True
        assert wait_for(lambda: debug.simulate_get("/debug/health").status_code == 503)
        assert debug.simulate_get("/debug/health").json == {"storagedriver_inmemory": "backend unreachable (injected)"}
        driver.failing = False
        assert wait_for(lambda: debug.simulate_get("/debug/health").status_code == 200)
    finally:
        app.shutdown()
    assert isinstance(check.check, PeriodicCheck)
    assert not [t for t in threading.enumerate() if t.name == "storagedriver_inmemory" and t.is_alive()]


def test_no_storage_check_unless_enabled():
    assert app_with().health_checks == []
    assert app_with(cfg=config(health={"storagedriver": {"enabled": False}})).health_checks == []


# --- registry_wsgi_middleware ---------------------------------------------------------------------


def test_wsgi_middleware_wraps_the_served_app_in_order_and_skips_a_broken_one():
    def tagging(tag: str):
        class Wrap:
            @hookimpl
            def registry_wsgi_middleware(self, app, config):
                def wrapped(environ, start_response):
                    def start(status, headers, exc_info=None):
                        return start_response(status, [*headers, ("X-Wrapped", tag)], exc_info)
                    return app(environ, start)
                return wrapped
        return Wrap()

    class BrokenWrap:
        @hookimpl
        def registry_wsgi_middleware(self, app):
            raise RuntimeError("no")

    class NoWrap:
        @hookimpl
        def registry_wsgi_middleware(self, app):
            return None

    app = app_with(tagging("inner"), BrokenWrap(), NoWrap(), tagging("outer"))
    served = app.wsgi_app()
    assert served is app.wsgi_app()  # built once
    seen: dict = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, headers

    body = b"".join(served(falcon.testing.create_environ("/v2/"), start_response))
    assert seen["status"].startswith("200") and body == b"{}"
    # pluggy calls the last registered first: "outer" wraps the app first, "inner" wraps that.
    assert [v for k, v in seen["headers"] if k == "X-Wrapped"] == ["outer", "inner"]
    bare = app_with()
    assert bare.wsgi_app() is bare


# --- registry_storage_call ------------------------------------------------------------------------


class StorageCalls:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float, BaseException | None]] = []

    @hookimpl
    def registry_storage_call(self, driver, operation, seconds, error):
        self.calls.append((driver, operation, seconds, error))


def test_storage_calls_are_reported_with_driver_operation_time_and_error():
    rec = StorageCalls()

    class BrokenMetrics:
        @hookimpl
        def registry_storage_call(self, operation):
            raise RuntimeError("metrics down")

    app = app_with(BrokenMetrics(), rec)
    assert isinstance(app.registry_context.store.driver, ObservedDriver)
    client = falcon.testing.TestClient(app)
    Pusher(client).image("m/repo", "t")
    rec.calls.clear()
    assert client.simulate_get("/v2/m/repo/manifests/t").status_code == 200
    assert rec.calls and all(d == "inmemory" and s >= 0 and e is None for d, _, s, e in rec.calls)
    assert {"get_content"} <= {op for _, op, _, _ in rec.calls}
    rec.calls.clear()
    assert client.simulate_get("/v2/m/repo/manifests/nope").status_code == 404
    assert any(isinstance(e, PathNotFoundError) for _, _, _, e in rec.calls)
    rec.calls.clear()
    Pusher(client).blob("m/repo", b"timed blob")
    operations = [op for _, op, _, _ in rec.calls]
    assert "writer" in operations and "writer.write" in operations
    assert any(op.startswith("writer.commit") for op in operations)  # commit (or the scratch commit of an upload)


def test_no_timing_wrapper_without_a_storage_call_plugin():
    driver = app_with().registry_context.store.driver
    assert type(driver) is CheckedDriver


# --- the debug listener, served by waitress ----------------------------------------------------


def test_server_serves_the_debug_app_on_http_debug_addr():
    state = {"error": ""}

    def check() -> None:
        if state["error"]:
            raise RuntimeError(state["error"])

    cfg = config(http={"addr": "127.0.0.1:0", "debug": {"addr": "127.0.0.1:0"}, "draintimeout": "1s"})
    app = app_with(Checks(HealthCheck("switch", check)), cfg=cfg)
    server = Server(app, cfg)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        [main] = server.addresses
        [debug] = server.debug_addresses
        assert main != debug
        r = requests.get(f"{debug}/debug/health", timeout=10)
        assert (r.status_code, r.json()) == (200, {})
        assert requests.get(f"{debug}/v2/", timeout=10).status_code == 404
        assert requests.get(f"{main}/debug/health", timeout=10).status_code == 404
        assert requests.get(f"{main}/v2/", timeout=10).status_code == 200
        state["error"] = "down"
        r = requests.get(f"{debug}/debug/health", timeout=10)
        assert (r.status_code, r.json()) == (503, {"switch": "down"})
        r = requests.get(f"{main}/v2/", timeout=10)  # out of rotation while unhealthy
        assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE"
    finally:
        server.stop()
        thread.join(10)
    assert not thread.is_alive()


def test_server_without_debug_addr_has_no_debug_listener():
    cfg = config(http={"addr": "127.0.0.1:0"})
    server = Server(app_with(cfg=cfg), cfg)
    try:
        assert server.debug_addresses == []
    finally:
        server.stop()
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        thread.join(10)


def test_a_debug_address_in_use_is_an_error_that_frees_the_main_listener():
    import socket

    def free_port() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        main = free_port()
        cfg = config(http={"addr": f"127.0.0.1:{main}", "debug": {"addr": f"127.0.0.1:{taken.getsockname()[1]}"}})
        with pytest.raises(OSError):
            Server(app_with(cfg=cfg), cfg)
        with socket.socket() as again:  # the main listener was closed, not left bound
            again.bind(("127.0.0.1", main))
    finally:
        taken.close()
