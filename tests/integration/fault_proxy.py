"""A fault-injecting proxy in front of the API server (test infrastructure, loopback only).

Plain HTTP towards the client, TLS with the admin client certificate towards the API server. A share of mutating
requests (create, update, patch, delete) is answered 429 (with Retry-After) or 500/503 without reaching the server;
everything else, watches included, is streamed through unchanged.
"""

from __future__ import annotations

import base64
import http.server
import json
import random
import tempfile
import threading
from pathlib import Path

import urllib3
import yaml

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}


class FaultProxy:
    def __init__(self, admin_kubeconfig: Path, fault_rate: float, seed: int = 7) -> None:
        config = yaml.safe_load(admin_kubeconfig.read_text())
        cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
        self.upstream = cluster["server"].rstrip("/")
        self._files = tempfile.TemporaryDirectory(prefix="fault-proxy-")
        ca, cert, key = (Path(self._files.name) / name for name in ("ca.crt", "client.crt", "client.key"))
        ca.write_bytes(_data(cluster, "certificate-authority"))
        cert.write_bytes(_data(user, "client-certificate"))
        key.write_bytes(_data(user, "client-key"))
        self.pool = urllib3.PoolManager(
            maxsize=64, cert_reqs="CERT_REQUIRED", ca_certs=str(ca), cert_file=str(cert), key_file=str(key)
        )
        self.fault_rate = fault_rate
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.injected = 0
        self.forwarded_writes = 0
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

    def start(self) -> FaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self._files.cleanup()

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


def _handler(proxy: FaultProxy):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args) -> None:  # noqa: ANN002 - silence per-request logging
            pass

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            status = proxy.should_fail(self.command)
            if status is not None:
                payload = json.dumps(
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "code": status,
                        "reason": "TooManyRequests" if status == 429 else "InternalError",
                        "message": "injected by the fault proxy",
                    }
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if status == 429:
                    self.send_header("Retry-After", "1")
                self.end_headers()
                self.wfile.write(payload)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}}
            upstream = proxy.pool.request(
                self.command,
                proxy.upstream + self.path,
                body=body,
                headers=headers,
                preload_content=False,
                redirect=False,
                retries=False,
                timeout=urllib3.Timeout(connect=10, read=None),
            )
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

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay  # noqa: N815 - http.server's naming

    return Handler
