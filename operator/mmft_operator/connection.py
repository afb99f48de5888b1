"""Where the API server is and how the operator proves who it is: in-cluster ServiceAccount or a kubeconfig.

The operator reads this itself instead of through the kubernetes package: importing that package loads all of its
1,600 generated model modules, 80 MiB of the operator's memory, and kopf imports it whenever it is importable
(`commands/run_operator.py` keeps it out of the operator process). kopf and `kube.Kube` share one `Connection`.
Why not kr8s or lightkube: docs/benchmarks.md, "The API client".

Kubeconfig handling follows client-go's documented rules:
- `$KUBECONFIG` is a list of files (`os.pathsep`-separated), merged in order: the first file that sets
  `current-context` wins, and so does the first file that defines a cluster, user or context of a given name; files
  that do not exist are skipped. Paths in a file are relative to that file.
- An `exec` credential is kept until its `expirationTimestamp`, or, without one, until the server rejects it (401).
- A cluster's `tls-server-name` is the name sent in TLS SNI and checked against the server's certificate; its
  `proxy-url` (http or https) carries every request.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# A token file is re-read this often: projected ServiceAccount tokens are rotated by the kubelet.
TOKEN_REREAD_SECONDS = 60.0
# An exec credential with an expiry is renewed this long before it, so that no request carries a token that expires
# on its way; never earlier than halfway through a short-lived credential's life.
EXEC_RENEW_BEFORE_EXPIRY_SECONDS = 60.0
DEFAULT_KUBECONFIG = "~/.kube/config"
PROXY_SCHEMES = ("http", "https")


class NoCredentials(RuntimeError):
    """No usable in-cluster account or kubeconfig."""


@dataclass
class Connection:
    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False
    token: str | None = None
    token_file: str | None = None
    # A kubeconfig `exec` credential plugin (gke-gcloud-auth-plugin and the like), run when its credential expires.
    exec_plugin: dict[str, Any] | None = None
    # The cluster's `tls-server-name`: the name in TLS SNI and the one the server's certificate must carry.
    tls_server_name: str | None = None
    # The cluster's `proxy-url`.
    proxy_url: str | None = None
    _cached: tuple[str | None, float] = field(default=(None, 0.0), init=False, repr=False)
    # The credential last given to a login (kopf's login handler), see `bearer_token`.
    _logged_in_with: str | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.proxy_url and self.proxy_url.split("://", 1)[0] not in PROXY_SCHEMES:
            supported = " and ".join(PROXY_SCHEMES)
            raise NoCredentials(f"proxy-url {self.proxy_url!r}: only {supported} proxies are supported")

    @classmethod
    def load(cls) -> Connection:
        """In-cluster when running in a pod, otherwise the current context of $KUBECONFIG or ~/.kube/config."""
        if os.environ.get("KUBERNETES_SERVICE_HOST") and (SERVICE_ACCOUNT_DIR / "token").exists():
            return cls.in_cluster()
        return cls.from_kubeconfig()

    @classmethod
    def in_cluster(cls) -> Connection:
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        host = f"[{host}]" if ":" in host else host
        return cls(
            server=f"https://{host}:{port}",
            ca_file=str(SERVICE_ACCOUNT_DIR / "ca.crt"),
            token_file=str(SERVICE_ACCOUNT_DIR / "token"),
        )

    @classmethod
    def from_kubeconfig(cls, path: str | None = None) -> Connection:
        """The current context of the kubeconfig files in `path` (or $KUBECONFIG, or ~/.kube/config), merged."""
        listed = path or os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
        paths = [Path(item).expanduser() for item in listed.split(os.pathsep) if item]
        merged = _merge([(config_path, _read(config_path)) for config_path in paths if config_path.exists()])
        if merged is None:
            raise NoCredentials(
                f"no in-cluster ServiceAccount and no kubeconfig at {os.pathsep.join(str(p) for p in paths)}"
            )
        current = merged["current-context"]
        context, _ = merged["contexts"].get(current or "", ({}, None))
        if not context:
            raise NoCredentials(f"{listed}: current-context {current!r} not found")
        if context.get("cluster") not in merged["clusters"]:
            raise NoCredentials(f"{listed}: cluster {context.get('cluster')!r} of context {current!r} not found")
        cluster, cluster_base = merged["clusters"][context["cluster"]]
        user, user_base = merged["users"].get(context.get("user", ""), ({}, cluster_base))
        return cls(
            server=cluster["server"],
            ca_file=_file(cluster_base, cluster, "certificate-authority"),
            cert_file=_file(user_base, user, "client-certificate"),
            key_file=_file(user_base, user, "client-key"),
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
            token=user.get("token"),
            token_file=str(user_base / Path(user["tokenFile"]).expanduser()) if user.get("tokenFile") else None,
            exec_plugin=user.get("exec"),
            tls_server_name=cluster.get("tls-server-name"),
            proxy_url=cluster.get("proxy-url"),
        )

    def bearer_token(self) -> str | None:
        """The credential for a login. kopf logs in at start and again only after the server rejected its
        credential (401), so an exec credential already given to a login is not given again: the plugin runs anew."""
        with self._lock:
            if self.exec_plugin and not self.token and self._cached[0] == self._logged_in_with:
                self._cached = (None, 0.0)
        token = self.current_token()
        with self._lock:
            self._logged_in_with = token
        return token

    def current_token(self) -> str | None:
        """The credential for the next request: a token file re-read now and then, an exec credential kept until
        its expiry or until `rejected` is called."""
        if self.token:
            return self.token
        if not (self.token_file or self.exec_plugin):
            return None
        with self._lock:
            token, valid_until = self._cached
            now = dt.datetime.now(dt.UTC).timestamp()
            if token is None or now >= valid_until:
                token, valid_until = self._read_token_file(now) if self.token_file else self._run_exec_plugin(now)
                self._cached = (token, valid_until)
            return token

    def rejected(self, token: str | None) -> bool:
        """The server answered 401 to `token`: drop it if it can be renewed. Returns whether a retry may succeed."""
        if self.token or not (self.token_file or self.exec_plugin):
            return False
        with self._lock:
            if self._cached[0] == token:
                self._cached = (None, 0.0)
        return True

    def _read_token_file(self, now: float) -> tuple[str, float]:
        return Path(self.token_file).read_text().strip(), now + TOKEN_REREAD_SECONDS

    def _run_exec_plugin(self, now: float) -> tuple[str, float]:
        plugin = self.exec_plugin
        env = {**os.environ, **{item["name"]: item["value"] for item in plugin.get("env") or []}}
        result = subprocess.run(  # noqa: S603 - the command the user's kubeconfig names
            [plugin["command"], *(plugin.get("args") or [])], env=env, capture_output=True, text=True, check=True
        )
        status = json.loads(result.stdout).get("status") or {}
        expires = status.get("expirationTimestamp")
        if not expires:  # kept until the server rejects it
            return status["token"], float("inf")
        expiry = dt.datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()
        return status["token"], expiry - min(EXEC_RENEW_BEFORE_EXPIRY_SECONDS, max(expiry - now, 0.0) / 2)


def _read(config_path: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as error:
        raise NoCredentials(f"{config_path}: not a kubeconfig: {error}") from error


def _merge(configs: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any] | None:
    """client-go's merge: the first file to set current-context, or to name a cluster, user or context, wins. Each
    entry keeps the directory of its file, against which its relative paths resolve."""
    if not configs:
        return None
    merged: dict[str, Any] = {"current-context": None, "clusters": {}, "users": {}, "contexts": {}}
    for config_path, config in configs:
        merged["current-context"] = merged["current-context"] or config.get("current-context")
        for section in ("clusters", "users", "contexts"):
            for item in config.get(section) or []:
                merged[section].setdefault(item["name"], (item.get(section[:-1]) or {}, config_path.parent))
    return merged


def _file(base: Path, section: dict[str, Any], key: str) -> str | None:
    """A kubeconfig file path (relative to the kubeconfig) or inline `-data`, as a path: TLS libraries want files."""
    if section.get(key):
        return str(base / Path(section[key]).expanduser())
    data = section.get(f"{key}-data")
    if not data:
        return None
    handle = tempfile.NamedTemporaryFile(prefix="mmft-", suffix=".pem", delete=False)  # noqa: SIM115 - kept open by path
    with handle:
        handle.write(base64.b64decode(data))
    os.chmod(handle.name, 0o600)
    return handle.name
