"""Proxies in front of the API server that change what a client meets (test infrastructure, loopback only).

`ApiProxy` relays every request: plain HTTP towards the client, TLS towards the API server with the credentials of
the kubeconfig it is given (the admin's client certificate, or a ServiceAccount token, so that the audit log names
the client's real user). Subclasses decide, request by request, to answer in the server's place (`intercept`), and
see the server's status of what was forwarded (`forwarded`).

`FaultProxy` answers a share of mutating requests (create, update, patch, delete) with 429 (with Retry-After) or
500/503 without reaching the server; everything else, watches included, is streamed through unchanged.
"""

from __future__ import annotations

import base64
import http.server
import json
import random
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import urllib3
import yaml

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
_NAMESPACED = re.compile(r"/namespaces/(?P<namespace>[^/?]+)/(?P<rest>[^?]*)")


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    path: str
    body: bytes | None

    @property
    def mutating(self) -> bool:
        return self.method in MUTATING

    @property
    def namespace(self) -> str | None:
        """The namespace in the path (None for cluster-scoped paths; `namespaces/x` itself is not inside x)."""
        match = _NAMESPACED.search(self.path)
        return match.group("namespace") if match else None

    @property
    def resource(self) -> str:
        """`plural[/name[/subresource]]` inside the namespace, without the query: what a report should name."""
        match = _NAMESPACED.search(self.path)
        return match.group("rest") if match else self.path.split("?", 1)[0]


@dataclass(frozen=True)
class Reply:
    """An answer given in the API server's place."""

    status: int
    body: dict = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


# `intercept` returns it for a request that must get no answer at all: the connection is closed unanswered.
NO_ANSWER = Reply(status=0)


class ApiProxy:
    def __init__(self, upstream_kubeconfig: Path) -> None:
        config = yaml.safe_load(upstream_kubeconfig.read_text())
        cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
        self.upstream = cluster["server"].rstrip("/")
        self._files = tempfile.TemporaryDirectory(prefix="api-proxy-")
        ca = Path(self._files.name) / "ca.crt"
        ca.write_bytes(_data(cluster, "certificate-authority"))
        client_certificate = {}
        if "client-certificate-data" in user or "client-certificate" in user:
            cert, key = Path(self._files.name) / "client.crt", Path(self._files.name) / "client.key"
            cert.write_bytes(_data(user, "client-certificate"))
            key.write_bytes(_data(user, "client-key"))
            client_certificate = {"cert_file": str(cert), "key_file": str(key)}
        self.upstream_headers = {"Authorization": f"Bearer {user['token']}"} if user.get("token") else {}
        self.pool = urllib3.PoolManager(maxsize=64, cert_reqs="CERT_REQUIRED", ca_certs=str(ca), **client_certificate)
        self.lock = threading.Lock()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "proxy", "cluster": {"server": self.url}}],
                    "users": [{"name": "proxy", "user": {}}],
                    "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
                    "current-context": "proxy",
                }
            )
        )
        return path

    def start(self):  # noqa: ANN201 - returns the subclass
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self._files.cleanup()

    def intercept(self, request: ProxiedRequest) -> Reply | None:
        """A reply given instead of the server's (may block), or None to forward the request."""
        return None

    def forwarded(self, request: ProxiedRequest, status: int) -> None:
        """Called once the server has answered a forwarded request with `status` (before the body is relayed)."""


class FaultProxy(ApiProxy):
    def __init__(self, admin_kubeconfig: Path, fault_rate: float, seed: int = 7) -> None:
        super().__init__(admin_kubeconfig)
        self.fault_rate = fault_rate
        self.random = random.Random(seed)
        self.injected = 0
        self.forwarded_writes = 0

    def intercept(self, request: ProxiedRequest) -> Reply | None:
        status = self.should_fail(request.method)
        if status is None:
            return None
        return Reply(
            status,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "code": status,
                "reason": "TooManyRequests" if status == 429 else "InternalError",
                "message": "injected by the fault proxy",
            },
            {"Retry-After": "1"} if status == 429 else {},
        )

    def should_fail(self, method: str) -> int | None:
        if method not in MUTATING:
            return None
        with self.lock:
            if self.random.random() >= self.fault_rate:
                self.forwarded_writes += 1
                return None
            self.injected += 1
            return self.random.choice((429, 429, 500, 503))


def _data(section: dict, key: str) -> bytes:
    if f"{key}-data" in section:
        return base64.b64decode(section[f"{key}-data"])
    return Path(section[key]).read_bytes()


def _handler(proxy: ApiProxy):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args) -> None:  # noqa: ANN002 - silence per-request logging
            pass

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = ProxiedRequest(self.command, self.path, self.rfile.read(length) if length else None)
            reply = proxy.intercept(request)
            if reply is NO_ANSWER:
                self.close_connection = True
                return
            if reply is not None:
                self._answer(reply)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}}
            upstream = proxy.pool.request(
                self.command,
                proxy.upstream + self.path,
                body=request.body,
                headers={**headers, **proxy.upstream_headers},
                preload_content=False,
                redirect=False,
                retries=False,
                timeout=urllib3.Timeout(connect=10, read=None),
            )
            proxy.forwarded(request, upstream.status)
            self.send_response(upstream.status)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for chunk in upstream.stream(8192, decode_content=False):
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                upstream.release_conn()

        def _answer(self, reply: Reply) -> None:
            payload = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay  # noqa: N815 - http.server's naming

    return Handler
