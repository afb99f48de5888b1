"""The reads a plan needs: the resource, its Job, the Job's pods, the workload's report and the referenced resources.

From the watch cache (kopf's indexes) once it holds its initial listing, from the API before that and wherever the
cache cannot answer: a write based on a cached owner conflicted, or status says the Job exists but its creation has
not reached the watch yet. Children that may have to be deleted are listed from the API.
Referenced resources (a DatasetPrep, the FineTuneJobs an Evaluation compares) are read
from the API: a resource waits on them, so a fresh read decides when it may start.
"""

from __future__ import annotations

from typing import Any

from mmft_operator import naming
from mmft_operator.api.common import API_VERSION
from mmft_operator.builders.common import Owner
from mmft_operator.builders.finetunejob import KIND as FINETUNEJOB
from mmft_operator.contracts.progress import WorkloadReport
from mmft_operator.kube import Kube, Ref, path
from mmft_operator.reconcile.engine import Reference, read_report
from mmft_operator.status.workload import WorkloadEvent

from .watch_cache import WatchCache, event_entry


class Observer:
    def __init__(self, kube: Kube, cache: WatchCache) -> None:
        self.kube = kube
        self.cache = cache

    def owner(self, kind: str, namespace: str, name: str, fresh: bool) -> dict[str, Any] | None:
        """From the watch unless `fresh` (a write based on it conflicted) or the watch has not got it."""
        cached = None if fresh or not self.cache.ready else self.cache.owner(kind, namespace, name)
        return cached if cached is not None else self.kube.get(Ref(API_VERSION, kind, namespace, name))

    def job(self, namespace: str, name: str, children_recorded: bool) -> dict[str, Any] | None:
        if not self.cache.ready:
            return self.kube.get(Ref("batch/v1", "Job", namespace, name))
        job = self.cache.job(namespace, name)
        if job is None and children_recorded:
            # The status says the children exist: the Job's creation may just not have reached the watch yet.
            job = self.kube.get(Ref("batch/v1", "Job", namespace, name))
        return job

    def pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        if not self.cache.ready:
            return self.kube.list("v1", "Pod", namespace, {"batch.kubernetes.io/job-name": job_name})
        return self.cache.pods(namespace, job_name)

    def report(self, owner: Owner) -> WorkloadReport | None:
        name = naming.report_config_map(owner.kind, owner.name)
        if not self.cache.ready:
            config_map = self.kube.get(Ref("v1", "ConfigMap", owner.namespace, name))
        else:
            config_map = self.cache.report(owner.namespace, name)
        return read_report(owner, config_map)

    def children(self, owner: Owner, kinds: tuple[tuple[str, str], ...]) -> dict[tuple[str, str], list[dict]]:
        """The owner's existing children of these (apiVersion, kind)s, listed by its labels from the API: kopf
        does not watch Services or Deployments, and they are read only when the children are ensured."""
        labels = naming.owner_labels(owner.kind, owner.name)
        return {(api_version, kind): self.kube.list(api_version, kind, owner.namespace, labels)
                for api_version, kind in kinds}

    def referenced(self, namespace: str, references: list[Reference]) -> dict[Reference, dict[str, Any] | None]:
        return {ref: self.kube.get(Ref(API_VERSION, ref.kind, namespace, ref.name)) for ref in references}

    def events(self, namespace: str, job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> list[WorkloadEvent]:
        """Warning events saying the Job cannot create its pod or a pod cannot mount its volumes (the verdict keeps
        those of the current Job's and pods' uids). Before the watch cache is ready: one API call per object."""
        if job is None:
            return []
        subjects = [("Job", job["metadata"]["name"])] + [("Pod", pod["metadata"]["name"]) for pod in pods]
        if self.cache.ready:
            return [event for kind, name in subjects for event in self.cache.events(namespace, kind, name)]
        found = []
        for kind, name in subjects:
            selector = f"type=Warning,involvedObject.kind={kind},involvedObject.name={name}"
            listed = self.kube.request("GET", path("v1", "Event", namespace), query={"fieldSelector": selector})
            found += [entry[1] for item in listed.get("items", []) if (entry := event_entry(item)) is not None]
        return found

    def service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.cache.ready:
            return self.cache.service_account(namespace, name)
        return self.kube.get(Ref("v1", "ServiceAccount", namespace, name))

    def deployment_names(self, owner: Owner) -> list[str]:
        """The Deployments a resource may own: a FineTuneJob's TensorBoard."""
        return [naming.tensorboard(owner.name)] if owner.kind == FINETUNEJOB else []

    def deployment(self, owner: Owner, name: str) -> dict[str, Any] | None:
        """The owner's Deployment `name` as last watched; one owned by someone else counts as missing."""
        if self.cache.ready:
            deployment = self.cache.deployment(owner.namespace, name)
        else:
            deployment = self.kube.get(Ref("apps/v1", "Deployment", owner.namespace, name))
        references = ((deployment or {}).get("metadata") or {}).get("ownerReferences") or []
        return deployment if any(ref.get("uid") == owner.uid for ref in references) else None
