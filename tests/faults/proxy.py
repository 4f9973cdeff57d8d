"""Fault injection on loopback: proxies that stand between the code under test and a real service (an MLflow
server, moto's S3 server, Redis) and fail on command.

``HttpFaults`` forwards HTTP requests and, for those matching a rule, answers an error status, stalls past
the client's timeout, or lets the upstream commit the request and then drops the reply (what a client
sees when a server or network fails after the server did the work). ``TcpFaults`` forwards raw bytes and
can cut a connection after some bytes, or accept and never answer.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Action = Literal["status", "stall", "drop_reply", "refuse"]


@dataclass
class Rule:
    action: Action
    method: str = ".*"
    path: str = ".*"
    times: int | None = None  # None: until cleared
    status: int = 503
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        live = self.times is None or self.hits < self.times
        return live and re.fullmatch(self.method, method) is not None and re.search(self.path, path) is not None


@dataclass
class HttpFaults:
    """An HTTP proxy on 127.0.0.1 in front of ``upstream`` (``host:port``)."""

    upstream: str
    rules: list[Rule] = field(default_factory=list)
    seen: list[tuple[str, str]] = field(default_factory=list)
    _server: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail(
        self, action: Action, *, method: str = ".*", path: str = ".*", times: int | None = None, **kw: Any
    ) -> Rule:
        rule = Rule(action, method, path, times, **kw)
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def start(self) -> HttpFaults:
        faults = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                faults.seen.append((self.command, self.path))
                rule = next((r for r in faults.rules if r.matches(self.command, self.path)), None)
                if rule is not None:
                    rule.hits += 1
                    if rule.action == "refuse":
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if rule.action == "stall":
                        time.sleep(30)
                        self.close_connection = True
                        return
                    if rule.action == "status":
                        payload = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "injected fault"}'
                        self.send_response(rule.status)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(payload)))
                        self.send_header("Connection", "close")
                        self.end_headers()
                        self.wfile.write(payload)
                        self.close_connection = True
                        return
                host, port = faults.upstream.split(":")
                upstream = http.client.HTTPConnection(host, int(port), timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                upstream.request(self.command, self.path, body=body, headers=headers)
                reply = upstream.getresponse()
                data = reply.read()
                upstream.close()
                if rule is not None and rule.action == "drop_reply":  # the server did it; the client never hears
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(reply.status, reply.reason)
                for key, value in reply.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_one

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False  # a stalled handler must not hold up stop()
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class TcpFaults:
    """A TCP proxy on 127.0.0.1 in front of ``upstream``: once clients have sent ``cut_after`` bytes in all,
    the connection carrying the last of them is closed on both sides (once; later bytes pass);
    ``blackhole`` accepts and never answers."""

    upstream: tuple[str, int]
    cut_after: int | None = None
    blackhole: bool = False
    _server: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> TcpFaults:
        faults = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                client = self.request
                if faults.blackhole:
                    time.sleep(3600)
                    return
                server = socket.create_connection(faults.upstream)

                def back() -> None:
                    try:
                        while data := server.recv(65536):
                            client.sendall(data)
                    except OSError:
                        pass

                threading.Thread(target=back, daemon=True).start()
                try:
                    while data := client.recv(65536):
                        with faults._lock:
                            budget = faults.cut_after
                            if budget is not None:
                                faults.cut_after = None if len(data) >= budget else budget - len(data)
                        if budget is not None and len(data) >= budget:
                            server.sendall(data[:budget])
                            break
                        server.sendall(data)
                except OSError:
                    pass
                finally:
                    for sock in (server, client):
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
                        sock.close()

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            block_on_close = False
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
