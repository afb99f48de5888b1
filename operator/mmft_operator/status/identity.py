"""Whether the workload's ServiceAccount can reach Google Cloud under Workload Identity Federation for GKE: a warning
condition before any pod is created, because a pod without access only shows it as a FailedMount on the bucket."""

from __future__ import annotations

from typing import Any

from mmft_operator.status.conditions import ConditionUpdate

CONDITION = "WorkloadIdentity"
GCP_SERVICE_ACCOUNT_ANNOTATION = "iam.gke.io/gcp-service-account"


def workload_identity_conditions(
    name: str, service_account: dict[str, Any] | None, applies: bool
) -> dict[str, ConditionUpdate | None]:
    """The WorkloadIdentity condition for the ServiceAccount `name` (as observed; None: it does not exist), or its
    removal where the check does not apply. A warning only: GKE also lets IAM grant roles to the Kubernetes
    ServiceAccount itself (a principal://…/subject/ns/NAMESPACE/sa/NAME member), which needs no annotation."""
    if not applies:
        return {CONDITION: None}
    if service_account is None:
        return {CONDITION: ConditionUpdate(
            CONDITION, False, "ServiceAccountNotFound",
            f"ServiceAccount {name} does not exist: the Job cannot create its pods until it does "
            f"(spec.serviceAccountName)",
        )}
    linked = ((service_account.get("metadata") or {}).get("annotations") or {}).get(GCP_SERVICE_ACCOUNT_ANNOTATION)
    if linked:
        return {CONDITION: ConditionUpdate(
            CONDITION, True, "GcpServiceAccountLinked", f"ServiceAccount {name} acts as {linked}"
        )}
    return {CONDITION: ConditionUpdate(
        CONDITION, False, "WorkloadIdentityMissing",
        f"ServiceAccount {name} has no {GCP_SERVICE_ACCOUNT_ANNOTATION} annotation: unless IAM grants this "
        f"Kubernetes ServiceAccount access to the bucket directly (a Workload Identity Federation principal), the "
        f"Cloud Storage FUSE mount will fail (FailedMount). Annotate it with the Google service account to act as, or "
        f"grant the bucket's roles to its principal",
    )}
