"""Kubeconfig loading as client-go documents it, against real local endpoints: an HTTPS server with the local
cluster's own PKI (its certificate names `kubernetes` and 127.0.0.1, not 127.0.0.2), an HTTP CONNECT proxy, and exec
credential plugins that are real processes counting their runs."""

from __future__ import annotations

import datetime as dt
import json
import select
import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import urllib3
import yaml
from mmft_localcluster.pki import create_pki
from mmft_operator.connection import Connection, NoCredentials
from mmft_operator.kube import ApiError, Kube


def _write_kubeconfig(path: Path, **config) -> Path:
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", **config}))
    return path


def _cluster(name: str, **cluster) -> dict:
    return {"name": name, "cluster": cluster}


def _user(name: str, **user) -> dict:
    return {"name": name, "user": user}


def _context(name: str, cluster: str, user: str) -> dict:
    return {"name": name, "context": {"cluster": cluster, "user": user}}


# -- several KUBECONFIG files ----------------------------------------------------------------------------------------
def test_kubeconfig_files_merge_in_order_first_definition_wins(tmp_path: Path, monkeypatch) -> None:
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    # The first file chooses the context and defines the cluster; the second defines the user (its relative
    # certificate paths resolve against the second file's directory) and a same-named cluster that must lose.
    first = _write_kubeconfig(
        first_dir / "config",
        clusters=[_cluster("prod", server="https://first:6443", **{"certificate-authority": "ca.crt"})],
        contexts=[_context("work", "prod", "me")],
        **{"current-context": "work"},
    )
    second = _write_kubeconfig(
        second_dir / "config",
        clusters=[_cluster("prod", server="https://second:6443")],
        users=[_user("me", **{"client-certificate": "me.crt", "client-key": "me.key"})],
        contexts=[_context("other", "prod", "me")],
        **{"current-context": "other"},
    )
    missing = tmp_path / "absent"
    monkeypatch.setenv("KUBECONFIG", f"{missing}:{first}::{second}")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    loaded = Connection.load()

    assert loaded.server == "https://first:6443"
    assert loaded.ca_file == str(first_dir / "ca.crt")
    assert loaded.cert_file == str(second_dir / "me.crt")
    assert loaded.key_file == str(second_dir / "me.key")


def test_current_context_comes_from_the_first_file_that_sets_it(tmp_path: Path, monkeypatch) -> None:
    users_only = _write_kubeconfig(tmp_path / "users", users=[_user("me", token="from-users-file")])
    rest = _write_kubeconfig(
        tmp_path / "rest",
        clusters=[_cluster("c", server="https://c:6443")],
        users=[_user("me", token="shadowed")],
        contexts=[_context("ctx", "c", "me")],
        **{"current-context": "ctx"},
    )
    monkeypatch.setenv("KUBECONFIG", f"{users_only}:{rest}")
    loaded = Connection.from_kubeconfig()
    assert (loaded.server, loaded.bearer_token()) == ("https://c:6443", "from-users-file")


def test_a_context_naming_a_missing_cluster_is_a_clear_error(tmp_path: Path) -> None:
    config = _write_kubeconfig(
        tmp_path / "config", contexts=[_context("ctx", "gone", "me")], **{"current-context": "ctx"}
    )
    with pytest.raises(NoCredentials, match="cluster 'gone' of context 'ctx' not found"):
        Connection.from_kubeconfig(str(config))


def test_none_of_the_listed_kubeconfigs_exists(tmp_path: Path) -> None:
    with pytest.raises(NoCredentials, match="no kubeconfig at .*one:.*two"):
        Connection.from_kubeconfig(f"{tmp_path / 'one'}:{tmp_path / 'two'}")


# -- exec credential plugins -----------------------------------------------------------------------------------------
def _exec_plugin(tmp_path: Path, expires_in: float | None) -> tuple[dict, Path]:
    """A real plugin process: each run appends a line to `runs` and prints a new token `token-<run>`."""
    runs = tmp_path / "runs"
    runs.touch()
    expiry = ""
    if expires_in is not None:
        stamp = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in)).strftime("%Y-%m-%dT%H:%M:%SZ")
        expiry = f', "expirationTimestamp": "{stamp}"'
    script = tmp_path / "plugin.py"
    script.write_text(
        "import pathlib, sys\n"
        f"runs = pathlib.Path({str(runs)!r})\n"
        "count = len(runs.read_text().splitlines()) + 1\n"
        "runs.write_text(runs.read_text() + 'run\\n')\n"
        'print(\'{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential", '
        f'"status": {{"token": "token-\' + str(count) + \'"{expiry}}}}}\')\n'
    )
    plugin = {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": sys.executable, "args": [str(script)]}
    return plugin, runs


def _runs(runs: Path) -> int:
    return len(runs.read_text().splitlines())


def test_an_exec_credential_without_expiry_is_kept_until_rejected(tmp_path: Path) -> None:
    plugin, runs = _exec_plugin(tmp_path, expires_in=None)
    connection = Connection(server="https://example", exec_plugin=plugin)
    assert [connection.current_token() for _ in range(5)] == ["token-1"] * 5
    assert _runs(runs) == 1
    assert connection.rejected("token-1") is True
    assert connection.current_token() == "token-2"
    assert _runs(runs) == 2


def test_an_exec_credential_is_kept_until_shortly_before_its_expiry(tmp_path: Path) -> None:
    plugin, runs = _exec_plugin(tmp_path, expires_in=3600)
    connection = Connection(server="https://example", exec_plugin=plugin)
    assert {connection.current_token() for _ in range(5)} == {"token-1"}
    assert _runs(runs) == 1

    (tmp_path / "expired").mkdir()
    expired_plugin, expired_runs = _exec_plugin(tmp_path / "expired", expires_in=-5)
    expired = Connection(server="https://example", exec_plugin=expired_plugin)
    assert [expired.current_token() for _ in range(3)] == ["token-1", "token-2", "token-3"]
    assert _runs(expired_runs) == 3


def test_each_login_after_the_first_gets_a_fresh_exec_credential(tmp_path: Path) -> None:
    # kopf logs in again only after a 401: the credential it had must not come back.
    plugin, runs = _exec_plugin(tmp_path, expires_in=3600)
    connection = Connection(server="https://example", exec_plugin=plugin)
    assert connection.bearer_token() == "token-1"
    assert connection.current_token() == "token-1"  # the operator's own requests share the login's credential
    assert connection.bearer_token() == "token-2"
    assert _runs(runs) == 2


def test_a_static_token_is_never_renewed(tmp_path: Path) -> None:
    connection = Connection(server="https://example", token="static")
    assert connection.rejected("static") is False
    assert connection.bearer_token() == connection.bearer_token() == "static"


# -- a real HTTPS endpoint -------------------------------------------------------------------------------------------
class _ApiStub(BaseHTTPRequestHandler):
    """Answers every GET with the request's Authorization header; 401 for the tokens in `server.rejected`."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        authorization = self.headers.get("Authorization", "")
        status = 401 if authorization.removeprefix("Bearer ") in self.server.rejected else 200
        body = json.dumps({"authorization": authorization, "reason": "Unauthorized" if status == 401 else ""}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[ThreadingHTTPServer, Path, list[str]]]:
    """An HTTPS server on 127.0.0.2 whose certificate (the local cluster's PKI) names `kubernetes` and 127.0.0.1.
    Yields the server, the CA file and the SNI names clients sent."""
    pki = create_pki(tmp_path / "pki")
    server_names: list[str] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.apiserver_cert, pki.apiserver_key)
    context.sni_callback = lambda _socket, name, _context: server_names.append(name)
    server = ThreadingHTTPServer(("127.0.0.2", 0), _ApiStub)
    server.rejected = set()
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, pki.ca_cert, server_names
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_tls_server_name_is_sent_and_verified(https_server, tmp_path: Path) -> None:
    server, ca_file, server_names = https_server
    url = f"https://127.0.0.2:{server.server_address[1]}"
    config = _write_kubeconfig(
        tmp_path / "config",
        clusters=[
            _cluster("c", server=url, **{"certificate-authority": str(ca_file), "tls-server-name": "kubernetes"})
        ],
        users=[_user("u", token="t")],
        contexts=[_context("ctx", "c", "u")],
        **{"current-context": "ctx"},
    )
    connection = Connection.from_kubeconfig(str(config))
    assert connection.tls_server_name == "kubernetes"
    assert Kube(connection).request("GET", "/version") == {"authorization": "Bearer t", "reason": ""}
    assert server_names == ["kubernetes"]

    # The same server without the name: its certificate does not name 127.0.0.2, so the request must fail.
    without_name = Connection(server=url, ca_file=str(ca_file), token="t")
    with pytest.raises(urllib3.exceptions.SSLError, match="127.0.0.2"):
        Kube(without_name).request("GET", "/version")


def test_a_rejected_exec_credential_is_renewed_and_the_request_retried_once(https_server, tmp_path: Path) -> None:
    server, ca_file, _ = https_server
    plugin, runs = _exec_plugin(tmp_path, expires_in=None)
    connection = Connection(
        server=f"https://127.0.0.2:{server.server_address[1]}",
        ca_file=str(ca_file),
        tls_server_name="kubernetes",
        exec_plugin=plugin,
    )
    kube = Kube(connection)
    assert kube.request("GET", "/a")["authorization"] == "Bearer token-1"
    assert kube.request("GET", "/b")["authorization"] == "Bearer token-1"
    server.rejected.add("token-1")
    assert kube.request("GET", "/c")["authorization"] == "Bearer token-2"
    assert _runs(runs) == 2

    server.rejected.update({"token-2", "token-3"})  # still rejected after one renewal: the 401 reaches the caller
    with pytest.raises(ApiError) as raised:
        kube.request("GET", "/d")
    assert raised.value.status == 401
    assert _runs(runs) == 3


# -- proxy-url -------------------------------------------------------------------------------------------------------
class _ConnectProxy(BaseHTTPRequestHandler):
    """An HTTP proxy that tunnels CONNECT and records each target."""

    def do_CONNECT(self) -> None:  # noqa: N802 - http.server's name
        self.server.targets.append(self.path)
        host, port = self.path.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)), timeout=10)
        self.send_response(200, "Connection established")
        self.end_headers()
        sockets = [self.connection, upstream]
        try:
            while True:
                readable, _, _ = select.select(sockets, [], [], 10)
                if not readable:
                    return
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (upstream if source is self.connection else self.connection).sendall(data)
        finally:
            upstream.close()

    def log_message(self, *_: object) -> None:
        pass


def test_proxy_url_carries_the_requests(https_server, tmp_path: Path) -> None:
    server, ca_file, _ = https_server
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _ConnectProxy)
    proxy.targets = []
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        target = f"127.0.0.2:{server.server_address[1]}"
        config = _write_kubeconfig(
            tmp_path / "config",
            clusters=[
                _cluster(
                    "c",
                    server=f"https://{target}",
                    **{
                        "certificate-authority": str(ca_file),
                        "tls-server-name": "kubernetes",
                        "proxy-url": f"http://127.0.0.1:{proxy.server_address[1]}",
                    },
                )
            ],
            users=[_user("u", token="t")],
            contexts=[_context("ctx", "c", "u")],
            **{"current-context": "ctx"},
        )
        kube = Kube(Connection.from_kubeconfig(str(config)))
        assert kube.request("GET", "/version")["authorization"] == "Bearer t"
        assert proxy.targets == [target]
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=10)


def test_an_unsupported_proxy_scheme_is_a_clear_error() -> None:
    with pytest.raises(NoCredentials, match="proxy-url 'socks5://proxy:1080': only http and https"):
        Connection(server="https://example", proxy_url="socks5://proxy:1080")
