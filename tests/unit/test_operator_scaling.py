"""What keeps the operator linear and small at 1,000 resources: kopf's start-up gate, slim watched bodies, and the
operator's own connection settings (no kubernetes package in the operator process)."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path

import pytest
from kopf._cogs.aiokits import aiotoggles
from mmft_operator import connection
from mmft_operator.connection import Connection, NoCredentials
from mmft_operator.controller import kopf_patches
from mmft_operator.controller.watch_cache import slim

kopf_patches.install()


def test_gate_opens_when_the_last_toggle_is_dropped_and_wakes_waiters_only_then() -> None:
    async def scenario() -> tuple[list[str], int]:
        gate = aiotoggles.ToggleSet(all)
        listing = await gate.make_toggle(name="listing")
        objects = [await gate.make_toggle(name=f"object-{index}") for index in range(50)]
        opened: list[str] = []
        wakeups = 0
        original_notify_all = gate._condition.notify_all

        def counting_notify_all() -> None:
            nonlocal wakeups
            wakeups += 1
            original_notify_all()

        gate._condition.notify_all = counting_notify_all

        async def waiter(index: int) -> None:
            await gate.wait_for(True)
            opened.append(f"waiter-{index}")

        waiters = [asyncio.create_task(waiter(index)) for index in range(50)]
        await asyncio.sleep(0)
        for toggle in objects:
            await gate.drop_toggle(toggle)
        await asyncio.sleep(0.01)
        assert opened == []  # the listing's toggle still holds the gate
        await gate.drop_toggle(listing)
        await asyncio.wait_for(asyncio.gather(*waiters), timeout=5)
        return opened, wakeups

    opened, wakeups = asyncio.run(scenario())
    assert len(opened) == 50
    assert wakeups == 1  # kopf's own methods notify on every one of the 51 drops


def test_a_toggle_added_to_an_open_gate_closes_it() -> None:
    async def scenario() -> bool:
        gate = aiotoggles.ToggleSet(all)
        assert gate.is_on()
        await gate.make_toggle(name="late")
        return gate.is_on()

    assert asyncio.run(scenario()) is False


def test_watched_children_keep_only_what_kopf_and_the_watch_cache_read() -> None:
    pod = {"metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"containers": []}, "status": {"phase": "Running"}}
    slim("", "pods", pod)
    assert pod == {"metadata": {"name": "p", "labels": {"a": "b"}}, "status": {"phase": "Running"}}

    job = {"metadata": {"name": "j"}, "spec": {"suspend": True, "template": {"spec": {}}}, "status": {"active": 1}}
    slim("batch", "jobs", job)
    assert job == {"metadata": {"name": "j"}, "spec": {"suspend": True}, "status": {"active": 1}}

    config = {"metadata": {"name": "x-axolotl"}, "data": {"axolotl.yaml": "base_model: m"}}
    report = {"metadata": {"name": "x-finetunejob-report"}, "data": {"report.json": "{}"}}
    slim("", "configmaps", config)
    slim("", "configmaps", report)
    assert "data" not in config
    assert report["data"] == {"report.json": "{}"}

    owner = {"metadata": {"name": "o"}, "spec": {"baseModel": "m"}}
    slim("mmft.io", "finetunejobs", owner)
    assert owner["spec"] == {"baseModel": "m"}


def _kubeconfig(tmp_path: Path, user: dict) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "clusters": [
                    {"name": "c", "cluster": {"server": "https://example:6443", "certificate-authority": "ca"}}
                ],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    return path


def test_kubeconfig_paths_are_relative_to_it_and_inline_data_becomes_files(tmp_path: Path) -> None:
    pem = b"-----BEGIN CERTIFICATE-----\n"
    user = {"client-certificate": "admin.crt", "client-key-data": base64.b64encode(pem).decode()}
    loaded = Connection.from_kubeconfig(str(_kubeconfig(tmp_path, user)))
    assert loaded.server == "https://example:6443"
    assert loaded.ca_file == str(tmp_path / "ca")
    assert loaded.cert_file == str(tmp_path / "admin.crt")
    assert Path(loaded.key_file).read_bytes() == pem
    assert loaded.bearer_token() is None


def test_token_from_the_kubeconfig_from_a_rotated_file_and_from_an_exec_plugin(tmp_path: Path, monkeypatch) -> None:
    assert Connection.from_kubeconfig(str(_kubeconfig(tmp_path, {"token": "t1"}))).bearer_token() == "t1"

    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    rotated = Connection(server="https://example", token_file=str(token_file))
    assert rotated.bearer_token() == "first"
    token_file.write_text("second\n")
    monkeypatch.setattr(connection, "TOKEN_REREAD_SECONDS", 0.0)
    rotated._cached = (None, 0.0)
    assert rotated.bearer_token() == "second"

    credential = {"status": {"token": "from-plugin", "expirationTimestamp": "2999-01-01T00:00:00Z"}}
    plugin = {"command": sys.executable, "args": ["-c", f"print({json.dumps(json.dumps(credential))})"]}
    assert Connection.from_kubeconfig(str(_kubeconfig(tmp_path, {"exec": plugin}))).bearer_token() == "from-plugin"


def test_in_cluster_when_the_service_account_is_mounted(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "token").write_text("sa-token")
    monkeypatch.setattr(connection, "SERVICE_ACCOUNT_DIR", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    loaded = Connection.load()
    assert loaded.server == "https://10.0.0.1:443"
    assert loaded.ca_file == str(tmp_path / "ca.crt")
    assert loaded.bearer_token() == "sa-token"


def test_no_credentials_is_an_error_naming_the_kubeconfig(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(NoCredentials, match="missing"):
        Connection.load()
