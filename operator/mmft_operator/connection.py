"""Where the API server is and how the operator proves who it is: in-cluster ServiceAccount or a kubeconfig.

The operator reads this itself instead of through the kubernetes package: importing that package loads all of its
1,600 generated model modules, 80 MiB of the operator's memory, and kopf imports it whenever it is importable
(`commands/run_operator.py` keeps it out of the operator process). kopf and `kube.Kube` share one `Connection`.
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
    # A kubeconfig `exec` credential plugin (gke-gcloud-auth-plugin and the like), run when its token expires.
    exec_plugin: dict[str, Any] | None = None
    _cached: tuple[str | None, float] = field(default=(None, 0.0), init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

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
        path = path or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config"
        config_path = Path(path).expanduser()
        if not config_path.exists():
            raise NoCredentials(f"no in-cluster ServiceAccount and no kubeconfig at {config_path}")
        config = yaml.safe_load(config_path.read_text()) or {}
        by_name = {
            section: {item["name"]: item.get(section[:-1]) or {} for item in config.get(section) or []}
            for section in ("contexts", "clusters", "users")
        }
        context = by_name["contexts"].get(config.get("current-context", ""))
        if context is None:
            raise NoCredentials(f"{config_path}: current-context {config.get('current-context')!r} not found")
        cluster = by_name["clusters"][context["cluster"]]
        user = by_name["users"].get(context.get("user", ""), {})
        base = config_path.parent
        return cls(
            server=cluster["server"],
            ca_file=_file(base, cluster, "certificate-authority"),
            cert_file=_file(base, user, "client-certificate"),
            key_file=_file(base, user, "client-key"),
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
            token=user.get("token"),
            token_file=str(base / user["tokenFile"]) if user.get("tokenFile") else None,
            exec_plugin=user.get("exec"),
        )

    def bearer_token(self) -> str | None:
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
        valid_until = dt.datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp() - 60 if expires else now
        return status["token"], valid_until


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
