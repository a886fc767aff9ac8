"""The web server life cycle every plugin daemon shares: bind, serve, shut down in order."""

from __future__ import annotations

import logging
import socket
import threading
import urllib.request
from collections.abc import Iterable

import pytest
from oslo_config import cfg

from kwapi import wsgi_service
from kwapi.config import ConfigError
from kwapi.wsgi_service import Listen
from tests.harness.processes import busy_tcp_port


def hello(environ: dict, start_response) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def listen(port: int = 0, host: str = "127.0.0.1") -> Listen:
    return Listen(host, port, 2, "web_host", "web_port")


def test_a_port_in_use_names_the_port_option():
    with busy_tcp_port() as port, pytest.raises(ConfigError) as caught:
        wsgi_service.bind(hello, listen(port), "test")
    assert caught.value.key == "web_port" and caught.value.section == "DEFAULT"
    assert f"cannot listen on 127.0.0.1:{port}" in str(caught.value)


def test_a_host_that_does_not_resolve_names_the_host_option():
    with pytest.raises(ConfigError) as caught:
        wsgi_service.bind(hello, listen(host="no-such-host.invalid"), "test")
    assert caught.value.key == "web_host"


def test_serves_until_stopped_then_shuts_down_in_order(caplog):
    server = wsgi_service.bind(hello, listen(), "test-ident")
    port = wsgi_service.bound_port(server)
    stop = threading.Event()
    answers: list[tuple[bytes, str]] = []

    def client() -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            answers.append((response.read(), response.headers["Server"]))
        stop.set()

    thread = threading.Thread(target=client)
    thread.start()
    wsgi_service.serve(server, stop)  # returns once the client has its answer
    thread.join(10)
    assert answers == [(b"hello", "test-ident")]

    done: list[str] = []

    def refused() -> None:  # the listening socket is closed before any step runs
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        done.append("refused")

    def broken() -> None:
        done.append("broken")
        raise RuntimeError("a bug in a step")

    with caplog.at_level(logging.ERROR, logger="kwapi.wsgi_service"):
        wsgi_service.shutdown(
            server, stopping=[refused, broken], saving=[lambda: done.append("saved")]
        )
    assert done == ["refused", "broken", "saved"]  # a failing step does not cost the save
    assert "a bug in a step" in caplog.text


def test_listen_reads_the_prefixed_options():
    conf = cfg.ConfigOpts()
    conf.register_opts(
        [
            cfg.HostAddressOpt("web_host", default="127.0.0.1"),
            cfg.PortOpt("web_port", default=8080),
            cfg.IntOpt("web_threads", default=3),
        ]
    )
    conf([])
    assert Listen.from_conf(conf, "web") == Listen("127.0.0.1", 8080, 3, "web_host", "web_port")
