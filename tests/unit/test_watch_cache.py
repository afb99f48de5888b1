"""The watch cache's entries and lookups, and the memory of the operator's own writes that filters their echoes."""

from __future__ import annotations

from mmft_operator.connection import Connection
from mmft_operator.controller.watch_cache import WatchCache, is_report, job_entry, owner_entry, pod_entry, report_entry
from mmft_operator.kube import Kube

JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {
        "name": "run-train",
        "namespace": "ml",
        "uid": "u1",
        "resourceVersion": "42",
        "ownerReferences": [{"uid": "owner", "controller": True}],
        "managedFields": [{"manager": "kube-controller-manager"}],
    },
    "spec": {"suspend": True, "template": {"spec": {"containers": [{"name": "trainer"}]}}},
    "status": {"active": 1},
}


def test_entries_keep_what_the_reconcile_reads_and_drop_templates_and_managed_fields() -> None:
    entry = job_entry(JOB)
    assert entry["metadata"] == {
        "name": "run-train",
        "namespace": "ml",
        "uid": "u1",
        "resourceVersion": "42",
        "ownerReferences": [{"uid": "owner", "controller": True}],
    }
    assert entry["spec"] == {"suspend": True} and entry["status"] == {"active": 1}
    pod = pod_entry(
        {"metadata": {"name": "p", "managedFields": [{}]}, "spec": {"nodeName": "n"}, "status": {"phase": "Running"}}
    )
    assert pod == {"metadata": {"name": "p"}, "status": {"phase": "Running"}}
    report = report_entry({"metadata": {"name": "run-finetunejob-report"}, "data": {"report.json": "{}"}})
    assert report["data"] == {"report.json": "{}"}
    assert is_report("run-finetunejob-report") and not is_report("run-axolotl")


def test_lookups_read_the_attached_indexes() -> None:
    cache = WatchCache()
    assert not cache.ready
    cache.attach(
        {("ml", "run-train"): [job_entry(JOB)]},
        {("ml", "run-train"): [{"metadata": {"name": "p1"}}, {"metadata": {"name": "p2"}}]},
        {},
    )
    assert cache.ready
    assert cache.job("ml", "run-train")["metadata"]["uid"] == "u1"
    assert cache.job("other", "run-train") is None
    assert [pod["metadata"]["name"] for pod in cache.pods("ml", "run-train")] == ["p1", "p2"]
    assert cache.report("ml", "run-finetunejob-report") is None


class _ChangingIndex(dict):
    """An index whose store changes size under the first reads, as kopf's may while a worker thread reads it."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def get(self, key, default=None):
        if self.failures:
            self.failures -= 1
            raise RuntimeError("dictionary changed size during iteration")
        return [{"metadata": {"name": "p1"}}]


def test_a_read_racing_the_watch_is_retried() -> None:
    cache = WatchCache()
    cache.attach({}, _ChangingIndex(failures=2), {})
    assert cache.pods("ml", "run-train") == [{"metadata": {"name": "p1"}}]


def test_the_echo_of_an_own_write_is_recognised_once_and_later_changes_are_not() -> None:
    kube = Kube(Connection(server="https://127.0.0.1:6443"))
    kube._remember("Job", JOB)
    kube._remember("Event", {"metadata": {"name": "e", "namespace": "ml", "resourceVersion": "7"}})
    assert kube.is_own_write("Job", "ml", "run-train", "42")
    assert not kube.is_own_write("Job", "ml", "run-train", "42")  # seen once: a repeat is not ours to ignore
    assert not kube.is_own_write("Job", "ml", "run-train", "43")  # someone else's later version
    assert not kube.is_own_write("Event", "ml", "e", "7")  # Events are not watched: never remembered


def _owner(resource_version: str, phase: str) -> dict:
    return {
        "apiVersion": "mmft.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "o", "namespace": "ns", "uid": "u", "resourceVersion": resource_version, "generation": 1},
        "spec": {"baseModel": "m"},
        "status": {"phase": phase},
    }


def test_owner_reads_the_newer_of_the_watch_and_the_operators_own_write() -> None:
    owners: dict = {("ns", "o"): [owner_entry(_owner("10", "Pending"))]}
    cache = WatchCache()
    cache.attach({}, {}, {}, {"FineTuneJob": owners})
    cache.wrote(_owner("12", "Running"))
    assert cache.owner("FineTuneJob", "ns", "o")["status"] == {"phase": "Running"}  # the watch lags the write

    owners[("ns", "o")] = [owner_entry(_owner("12", "Running"))]
    cache.owner("FineTuneJob", "ns", "o")
    owners[("ns", "o")] = [owner_entry(_owner("14", "Succeeded"))]
    assert cache.owner("FineTuneJob", "ns", "o")["status"] == {"phase": "Succeeded"}  # caught up: the watch again

    copy = cache.owner("FineTuneJob", "ns", "o")
    copy["status"]["phase"] = "changed by a reconcile"
    assert cache.owner("FineTuneJob", "ns", "o")["status"] == {"phase": "Succeeded"}  # callers get copies

    del owners[("ns", "o")]
    cache.wrote(_owner("16", "Succeeded"))
    assert cache.owner("FineTuneJob", "ns", "o") is None  # not watched (deleted): the API has to say
    assert cache.owner("Evaluation", "ns", "o") is None


def test_only_start_failure_warnings_about_jobs_and_pods_are_kept_in_both_event_apis_shapes() -> None:
    from mmft_operator.controller.watch_cache import event_entry
    from mmft_operator.status.workload import WorkloadEvent

    kubelet = {"metadata": {"namespace": "ml"}, "type": "Warning", "reason": "FailedMount", "message": "no bucket",
               "involvedObject": {"kind": "Pod", "namespace": "ml", "name": "p", "uid": "u"},
               "firstTimestamp": "2026-12-01T11:00:00Z", "lastTimestamp": "2026-12-01T11:04:00Z", "count": 3}
    assert event_entry(kubelet) == (("ml", "Pod", "p"), WorkloadEvent(
        "Pod", "p", "u", "FailedMount", "no bucket", "2026-12-01T11:00:00Z", "2026-12-01T11:04:00Z"))
    # events.k8s.io/v1 as read through core/v1: no first/lastTimestamp, a MicroTime and a series.
    job_controller = {"metadata": {"namespace": "ml"}, "type": "Warning", "reason": "FailedCreate", "message": "no",
                      "involvedObject": {"kind": "Job", "namespace": "ml", "name": "j", "uid": "v"},
                      "eventTime": "2026-12-01T11:00:00.123456Z",
                      "series": {"count": 2, "lastObservedTime": "2026-12-01T11:02:00.5Z"}}
    _, event = event_entry(job_controller)
    assert (event.first_seen, event.last_seen) == ("2026-12-01T11:00:00Z", "2026-12-01T11:02:00Z")
    assert event_entry({**kubelet, "reason": "BackOff"}) is None
    assert event_entry({**job_controller, "involvedObject": {"kind": "ReplicaSet", "name": "r"}}) is None


class _Store:
    """Like kopf's index Store: iterable, not subscriptable."""

    def __init__(self, *values: object) -> None:
        self._values = values

    def __iter__(self):  # noqa: ANN204
        return iter(self._values)


def test_the_owner_of_a_pod_and_the_users_of_a_service_account_come_from_the_indexes() -> None:
    cache = WatchCache()
    labels = {"mmft.io/owner-kind": "datasetprep", "mmft.io/owner-name": "d"}
    cache.attach(
        {("ml", "d-dataprep"): [{"metadata": {"name": "d-dataprep", "labels": labels}}]},
        {("ml", "d-dataprep"): _Store({"metadata": {"name": "d-dataprep-x1"}})},
        {},
        {"DatasetPrep": {("ml", "d"): _Store({"spec": {"serviceAccountName": "trainer"}}),
                         ("other", "e"): _Store({"spec": {"serviceAccountName": "trainer"}}),
                         ("ml", "f"): _Store({"spec": {}})}},
        service_accounts={("ml", "trainer"): [{"metadata": {"name": "trainer"}}]},
    )
    assert cache.owner_of_pod("ml", "d-dataprep-x1") == labels
    assert cache.owner_of_pod("ml", "unknown") is None
    assert cache.owners_using_service_account("ml", "trainer") == [("DatasetPrep", "d")]
    assert cache.owners_using_service_account("ml", "default") == [("DatasetPrep", "f")]
    assert cache.service_account("ml", "trainer") == {"metadata": {"name": "trainer"}}


def test_an_index_empty_when_attached_is_still_read_once_the_watch_fills_it() -> None:
    class EmptyFirst(dict):
        """Like kopf's Index: a Mapping that is empty (falsy) until the watch fills it."""

    events = EmptyFirst()
    cache = WatchCache()
    cache.attach({}, {}, {}, events=events)
    events[("ml", "Job", "j")] = ["an event"]
    assert cache.events("ml", "Job", "j") == ["an event"]
