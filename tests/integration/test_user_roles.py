"""Who may use mmft: the user roles aggregate into Kubernetes' view/edit/admin, proven by impersonating a namespace
editor, viewer and admin against the real API server; the optional allowed-images policy refuses other registries."""

from __future__ import annotations

import copy
import uuid

import pytest
import yaml
from cluster_helpers import ROOT, wait_for

pytestmark = pytest.mark.both_minors

SAMPLE = yaml.safe_load((ROOT / "deploy/samples/gemma3-melanoma/finetunejob.yaml").read_text())


def finetunejob(name: str, trainer_image: str | None = None) -> str:
    document = copy.deepcopy(SAMPLE)
    document["metadata"] = {"name": name}
    document["spec"]["dataset"] = {"trainPath": "/mnt/gcs/data/train.jsonl"}
    if trainer_image:
        document["spec"]["trainerImage"] = trainer_image
    return yaml.safe_dump(document)


def bind(kubectl, namespace: str, user: str, cluster_role: str) -> None:
    kubectl("create", "rolebinding", f"{user}-{cluster_role}", f"--clusterrole={cluster_role}", f"--user={user}",
            "-n", namespace)


def can(kubectl, namespace: str, user: str, verb: str, resource: str, *extra: str) -> bool:
    answer = kubectl("auth", "can-i", verb, resource, *extra, "-n", namespace, f"--as={user}", check=False)
    return answer.stdout.strip() == "yes"


def test_a_namespace_editor_creates_a_finetunejob_and_a_viewer_cannot(kubectl, installed, namespace) -> None:
    editor, viewer = f"editor-{uuid.uuid4().hex[:6]}", f"viewer-{uuid.uuid4().hex[:6]}"
    bind(kubectl, namespace, editor, "edit")
    bind(kubectl, namespace, viewer, "view")
    # The aggregation controller copies mmft-edit's rules into `edit` asynchronously.
    wait_for(lambda: can(kubectl, namespace, editor, "create", "finetunejobs.mmft.io"), timeout=60,
             what="the edit role to include mmft-edit")

    created = kubectl("create", "-n", namespace, f"--as={editor}", "-f", "-", input=finetunejob("by-editor"))
    assert "finetunejob.mmft.io/by-editor created" in created.stdout
    refused = kubectl("create", "-n", namespace, f"--as={viewer}", "-f", "-", input=finetunejob("by-viewer"),
                      check=False)
    assert refused.returncode != 0
    assert f'User "{viewer}" cannot create resource "finetunejobs" in API group "mmft.io"' in refused.stderr
    listed = kubectl("get", "finetunejobs", "-n", namespace, f"--as={viewer}", "-o", "name")
    assert listed.stdout.split() == ["finetunejob.mmft.io/by-editor"]
    assert not can(kubectl, namespace, viewer, "delete", "finetunejobs.mmft.io")
    assert can(kubectl, namespace, editor, "delete", "evaluations.mmft.io")
    # The status belongs to the operator: no user role may write it.
    assert not can(kubectl, namespace, editor, "patch", "finetunejobs.mmft.io", "--subresource=status")


def test_a_namespace_admin_gets_the_editor_rights_and_nothing_outside_its_namespace(
    kubectl, installed, namespace
) -> None:
    admin = f"admin-{uuid.uuid4().hex[:6]}"
    bind(kubectl, namespace, admin, "admin")
    wait_for(lambda: can(kubectl, namespace, admin, "deletecollection", "datasetpreps.mmft.io"), timeout=60,
             what="the admin role to include mmft-edit")
    assert not can(kubectl, "default", admin, "list", "finetunejobs.mmft.io")


@pytest.fixture
def allowed_images_policy(kubectl, installed):
    policy = str(ROOT / "deploy/policies/allowed-images")
    kubectl("apply", "--server-side", "-k", policy)
    yield
    kubectl("delete", "-k", policy, "--ignore-not-found")

    def lifted() -> bool:  # later tests name their own images: wait until the API server dropped the policy
        attempt = kubectl("create", "--dry-run=server", "-n", "default", "-f", "-",
                          input=finetunejob("after-policy", "example.com/any:1"), check=False)
        return attempt.returncode == 0

    wait_for(lifted, timeout=60, what="the allowed-images policy to be lifted")


def test_the_allowed_images_policy_refuses_other_registries(kubectl, allowed_images_policy, namespace) -> None:
    foreign = "docker.io/someone/trainer:1.0"

    def refused() -> str:
        attempt = kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-",
                          input=finetunejob("foreign", foreign), check=False)
        return attempt.stderr if attempt.returncode != 0 else ""

    # A new policy takes effect once the API server has loaded it, within seconds.
    message = wait_for(refused, timeout=60, what="the allowed-images policy to take effect")
    assert f"image {foreign} is not from an allowed registry" in message
    assert "us-docker.pkg.dev/mmft-project/mmft/" in message
    allowed = "us-docker.pkg.dev/mmft-project/mmft/mmft-workload:0.2.0"
    kubectl("create", "-n", namespace, "-f", "-", input=finetunejob("allowed", allowed))
    kubectl("create", "-n", namespace, "-f", "-", input=finetunejob("operator-default"))
