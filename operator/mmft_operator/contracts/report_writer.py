"""Workload side of the report contract (see :mod:`mmft_operator.contracts.progress`).

Writes are throttled so a fast logging loop does not hammer the API server, and never raise: a workload must not
fail because the cluster is briefly unreachable. The final report (Completed/Failed) is always sent.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

from .progress import (
    DEFAULT_REPORT_INTERVAL_SECONDS,
    ENV_JOB_UID,
    ENV_NAMESPACE,
    ENV_REPORT_CONFIGMAP,
    ENV_REPORT_FILE,
    ENV_REPORT_INTERVAL,
    REPORT_KEY,
    WorkloadReport,
)

log = logging.getLogger(__name__)

TERMINAL_PHASES = {"Completed", "Failed"}


class ReportWriter:
    def __init__(
        self,
        report_file: str | os.PathLike | None = None,
        configmap: str | None = None,
        namespace: str | None = None,
        interval_seconds: float | None = None,
        core_api=None,
        clock=time.monotonic,
        job_uid: str | None = None,
    ) -> None:
        self.report_file = Path(report_file) if report_file else None
        self.configmap = configmap
        self.namespace = namespace
        self.interval_seconds = DEFAULT_REPORT_INTERVAL_SECONDS if interval_seconds is None else interval_seconds
        self._core_api = core_api
        self._clock = clock
        self._last_sent: float | None = None
        self.job_uid = job_uid

    @classmethod
    def from_environment(cls, default_file: str | os.PathLike | None = None) -> ReportWriter:
        return cls(
            report_file=os.environ.get(ENV_REPORT_FILE) or default_file,
            configmap=os.environ.get(ENV_REPORT_CONFIGMAP) or None,
            namespace=os.environ.get(ENV_NAMESPACE) or None,
            interval_seconds=float(os.environ.get(ENV_REPORT_INTERVAL, DEFAULT_REPORT_INTERVAL_SECONDS)),
            job_uid=os.environ.get(ENV_JOB_UID) or None,
        )

    def publish(self, report: WorkloadReport, force: bool = False) -> None:
        if self.job_uid and report.jobUid is None:
            report = report.model_copy(update={"jobUid": self.job_uid})
        payload = report.to_json()
        if self.report_file:
            self._write_file(payload)
        if not (self.configmap and self.namespace):
            return
        now = self._clock()
        due = self._last_sent is None or now - self._last_sent >= self.interval_seconds
        if force or due or report.phase in TERMINAL_PHASES:
            self._patch_configmap(payload)
            self._last_sent = now

    def _write_file(self, payload: str) -> None:
        try:
            self.report_file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.report_file.parent, prefix=".report.", suffix=".tmp")
            with os.fdopen(fd, "w") as handle:
                handle.write(payload)
            os.replace(tmp, self.report_file)
        except OSError as error:
            log.warning("could not write report file %s: %s", self.report_file, error)

    def _api(self):
        if self._core_api is None:
            from kubernetes import client, config

            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            self._core_api = client.CoreV1Api()
        return self._core_api

    def _patch_configmap(self, payload: str) -> None:
        try:
            self._api().patch_namespaced_config_map(self.configmap, self.namespace, {"data": {REPORT_KEY: payload}})
        except Exception as error:  # noqa: BLE001 - reporting must never break the workload
            log.warning(
                "could not publish report to ConfigMap %s/%s: %s", self.namespace, self.configmap, _short(error)
            )


def _short(error: Exception) -> str:
    text = str(error)
    try:
        return json.loads(getattr(error, "body", "") or "{}").get("message", text)
    except (TypeError, ValueError):
        return text.splitlines()[0] if text else type(error).__name__
