"""The operator's API client against client libraries: CPU per request and memory, one run, same server.

Each client makes the same GETs (a ConfigMap-sized JSON answer, ~2 KB) from 16 threads, as the operator's reconcile
workers do, to one HTTPS server in another process (the local cluster's PKI, keep-alive). Printed per client: the
client process's CPU milliseconds per request (all its threads), wall seconds, and the RSS its import and its first
requests added. The server is the same for every client, so the differences are the clients'.

  python bench/api_client.py --requests 4000
  PYTHONPATH=...:/path/with/kr8s python bench/api_client.py   # clients that are not importable are skipped
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import re
import resource
import ssl
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

THREADS = 16
RESOURCE_PATH = "/api/v1/namespaces/bench/configmaps/bench-0001-axolotl"
ANSWER = json.dumps(
    {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "bench-0001-axolotl", "namespace": "bench", "resourceVersion": "12345"},
        "data": {"axolotl.yaml": "x" * 2000},
    }
).encode()


VERSION = json.dumps({"major": "1", "minor": "34", "gitVersion": "v1.34.0"}).encode()


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        answer = VERSION if self.path.rstrip("/").endswith("/version") else ANSWER
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_: object) -> None:
        pass


def _serve(pki_dir: str, port_queue: multiprocessing.Queue) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(f"{pki_dir}/apiserver.crt", f"{pki_dir}/apiserver.key")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    port_queue.put(server.server_address[1])
    server.serve_forever()


def _rss_mib() -> float:
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) / 1024


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _kubeconfig(directory: Path, server: str, ca_file: str) -> Path:
    path = directory / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority": ca_file}}],
                "users": [{"name": "u", "user": {"token": "bench"}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    return path


def _mmft(kubeconfig: Path):
    from mmft_operator.connection import Connection
    from mmft_operator.kube import Kube

    kube = Kube(Connection.from_kubeconfig(str(kubeconfig)))
    return lambda: kube.request("GET", RESOURCE_PATH)


def _kr8s(kubeconfig: Path):
    try:  # not a dependency of mmft: installed for this comparison only
        import kr8s.asyncio
        from kr8s._async_utils import Portal
    except ImportError:
        return None
    portal = Portal()
    api = portal.call(functools.partial(kr8s.asyncio.api, kubeconfig=str(kubeconfig)))

    async def get() -> dict:
        async with api.call_api("GET", version="", base=RESOURCE_PATH.rsplit("/", 1)[0], url="bench-0001-axolotl") as r:
            return r.json()

    return lambda: portal.call(get)


def _lightkube(kubeconfig: Path):
    try:  # not a dependency of mmft: installed for this comparison only
        from lightkube import Client, KubeConfig
        from lightkube.resources.core_v1 import ConfigMap
    except ImportError:
        return None
    client = Client(KubeConfig.from_file(str(kubeconfig)), namespace="bench")
    return lambda: client.get(ConfigMap, "bench-0001-axolotl")


CLIENTS = {"mmft (urllib3)": _mmft, "kr8s (sync, its portal thread)": _kr8s, "lightkube (sync)": _lightkube}


def _measure(name: str, kubeconfig: Path, requests: int, result_queue: multiprocessing.Queue) -> None:
    """In a fresh process per client, so that one's imports and pools do not count for another."""
    import mmft_operator.api.common  # noqa: F401 - the operator holds these anyway; only the client's own share counts
    import yaml  # noqa: F401

    before = _rss_mib()
    get = CLIENTS[name](kubeconfig)
    if get is None:
        result_queue.put({"client": name, "skipped": "not installed"})
        return
    get()  # the session, the TLS handshake
    cpu, wall = _cpu_seconds(), time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        for _ in pool.map(lambda _: get(), range(requests)):
            pass
    cpu, wall = _cpu_seconds() - cpu, time.monotonic() - wall
    result_queue.put(
        {
            "client": name,
            "cpu_ms_per_request": round(1000 * cpu / requests, 3),
            "wall_seconds": round(wall, 2),
            "rss_added_mib": round(_rss_mib() - before, 1),
        }
    )


def _median(measured: list[dict]) -> dict:
    complete = [result for result in measured if "cpu_ms_per_request" in result]
    if not complete:
        return measured[0]
    return {
        "client": complete[0]["client"],
        **{key: statistics.median(result[key] for result in complete) for key in complete[0] if key != "client"},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000, help="GETs per client and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median of each measure is printed")
    args = parser.parse_args()

    from mmft_localcluster.pki import create_pki

    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="mmft-api-client-") as scratch:
        pki = create_pki(Path(scratch) / "pki")
        port_queue = spawn.Queue()
        server = spawn.Process(target=_serve, args=(str(pki.directory), port_queue), daemon=True)
        server.start()
        try:
            kubeconfig = _kubeconfig(Path(scratch), f"https://127.0.0.1:{port_queue.get(timeout=60)}", str(pki.ca_cert))
            rounds: dict[str, list[dict]] = {name: [] for name in CLIENTS}
            for _ in range(args.rounds):  # interleaved, so that a change in the machine's load hits every client
                for name in CLIENTS:
                    result_queue = spawn.Queue()
                    worker = spawn.Process(target=_measure, args=(name, kubeconfig, args.requests, result_queue))
                    worker.start()
                    worker.join(timeout=1800)
                    rounds[name].append(
                        result_queue.get(timeout=5)
                        if not result_queue.empty()
                        else {"client": name, "failed": f"exit code {worker.exitcode}"}
                    )
        finally:
            server.terminate()
            server.join(timeout=10)
    results = [_median(measured) for measured in rounds.values()]
    print(
        json.dumps({"requests": args.requests, "threads": THREADS, "rounds": args.rounds, "clients": results}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
