"""The waitress glue: settings from config.yml, large bodies, graceful drain on stop."""

from __future__ import annotations

import http.client
import sys
import threading
import time

import pytest

from registry.serve import Server, waitress_options


def app(environ, start_response):
    """Echoes the body's length; ``/slow`` takes a second first, ``/stuck`` five."""
    time.sleep({"/slow": 1.0, "/stuck": 5.0}.get(environ["PATH_INFO"], 0))
    body = environ["wsgi.input"].read()
    data = str(len(body)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


def config(**http):
    return {"version": "0.1", "storage": {"inmemory": None}, "http": {"addr": "127.0.0.1:0", **http}}


class Running:
    """A :class:`Server` on a free loopback port, serving on a thread."""

    def __init__(self, cfg: dict) -> None:
        self.server = Server(app, cfg)
        (address,) = self.server.addresses
        self.port = int(address.rsplit(":", 1)[1])
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def stop(self, wait: float = 10) -> float:
        started = time.monotonic()
        self.server.stop()
        self.thread.join(wait)
        assert not self.thread.is_alive(), "server did not stop"
        return time.monotonic() - started


@pytest.fixture
def running():
    servers: list[Running] = []

    def start(**http) -> Running:
        servers.append(Running(config(**http)))
        return servers[-1]

    yield start
    for server in servers:
        if server.thread.is_alive():
            server.server.stop()
            server.server.stop()
            server.thread.join(10)


def test_options_defaults():
    options = waitress_options({"http": {"addr": "127.0.0.1:5000"}})
    assert options["listen"] == "127.0.0.1:5000"
    assert options["threads"] == 8
    assert options["max_request_body_size"] == sys.maxsize  # 0 = unlimited: waitress's 1 GiB cap is lifted
    assert options["ident"] == "registry"


def test_options_from_config():
    cfg = {
        "http": {
            "addr": "[::1]:5000",
            "waitress": {
                "threads": 2,
                "max_request_body_size": 1 << 40,
                "inbuf_overflow": 1 << 20,
                "unix_socket_perms": 660,
            },
        }
    }
    options = waitress_options(cfg)
    assert options["listen"] == "[::1]:5000"
    assert (options["threads"], options["max_request_body_size"], options["inbuf_overflow"]) == (2, 1 << 40, 1 << 20)
    assert options["unix_socket_perms"] == "660"
    assert waitress_options({"http": {"addr": ":5000"}})["listen"] == "*:5000"
    assert waitress_options({})["listen"] == "127.0.0.1:5000"
    unix = waitress_options({"http": {"net": "unix", "addr": "/run/registry.sock"}})
    assert unix["unix_socket"] == "/run/registry.sock" and "listen" not in unix


def test_serves_and_stops(running):
    server = running()
    conn = server.connect()
    conn.request("GET", "/")
    assert conn.getresponse().status == 200
    conn.close()
    assert server.stop() < 2


def test_body_larger_than_inbuf_overflow_is_spooled_and_served(running):
    server = running(waitress={"inbuf_overflow": 65536})
    body = b"x" * (3 << 20)
    conn = server.connect()
    conn.request("PUT", "/", body=body)
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, str(len(body)).encode())
    conn.close()


def test_max_request_body_size_when_set(running):
    server = running(waitress={"max_request_body_size": 1000})
    conn = server.connect()
    conn.request("PUT", "/", body=b"x" * 2000)
    assert conn.getresponse().status == 413
    conn.close()


def test_stop_lets_requests_in_flight_finish(running):
    server = running(draintimeout="10s")
    result = {}

    def slow():
        conn = server.connect()
        conn.request("GET", "/slow")
        response = conn.getresponse()
        result["status"], result["body"] = response.status, response.read()

    client = threading.Thread(target=slow)
    client.start()
    time.sleep(0.3)  # the request is in the app now
    took = server.stop()
    client.join(5)
    assert result == {"status": 200, "body": b"0"}
    assert took < 5


def test_idle_keepalive_connections_do_not_delay_stop(running):
    server = running(draintimeout="30s")
    conn = server.connect()
    conn.request("GET", "/")
    conn.getresponse().read()  # the connection stays open, idle
    assert server.stop() < 3
    conn.close()


def test_drain_timeout_bounds_the_wait(running):
    server = running(draintimeout="200ms")
    client = threading.Thread(target=lambda: _ignore_errors(server, "/stuck"), daemon=True)
    client.start()
    time.sleep(0.3)
    assert server.stop() < 2.5


def _ignore_errors(server: Running, path: str) -> None:
    try:
        conn = server.connect()
        conn.request("GET", path)
        conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        pass
