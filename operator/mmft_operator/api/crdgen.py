"""Generate CustomResourceDefinitions from the pydantic models (the single source of truth).

Pydantic emits JSON Schema 2020-12; the API server wants a structural OpenAPI v3.0 schema. The translation:
`$ref`s are inlined, `Optional[X]` becomes X (absent means unset), 2020-12 numeric exclusive bounds become the
3.0 boolean form, titles are dropped, and fields with a default factory get `default: {}` (or the factory's value)
so the API server's defaulting reaches nested fields.
"""

from __future__ import annotations

from typing import Any

import pydantic_core
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault

from .common import GROUP, VERSION
from .kinds import ALL_KINDS, CATEGORY, KindInfo

_DROPPED_KEYS = {"title", "$defs"}


class _KubernetesJsonSchema(GenerateJsonSchema):
    def get_default_value(self, schema):  # noqa: ANN001 - pydantic's signature
        if "default_factory" not in schema:
            return super().get_default_value(schema)
        value = schema["default_factory"]()
        if isinstance(value, BaseModel):
            # The full object, not `{}`: the API server checks CEL rules against a default as written.
            return value.model_dump(mode="json", by_alias=True, exclude_none=True)
        return value

    def encode_default(self, dft: Any) -> Any:
        if dft is None or dft is NoDefault:
            return dft
        return pydantic_core.to_jsonable_python(dft)


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_KubernetesJsonSchema)
    return _structural(raw, raw.get("$defs", {}))


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" not in node:
        return node
    target = defs[node["$ref"].rsplit("/", 1)[-1]]
    merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    if "x-kubernetes-validations" in target and "x-kubernetes-validations" in node:
        merged["x-kubernetes-validations"] = target["x-kubernetes-validations"] + node["x-kubernetes-validations"]
    return _resolve(merged, defs)


def _collapse_optional(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    branches = node.get("anyOf")
    if not branches:
        return node
    non_null = [branch for branch in branches if branch.get("type") != "null"]
    if len(non_null) != 1:
        raise ValueError(f"cannot express anyOf {branches!r} in a structural schema")
    outer = {k: v for k, v in node.items() if k != "anyOf"}
    if outer.get("default", 1) is None:
        del outer["default"]
    inner = _resolve(non_null[0], defs)
    merged = {**inner, **outer}
    if "x-kubernetes-validations" in inner and "x-kubernetes-validations" in outer:
        merged["x-kubernetes-validations"] = inner["x-kubernetes-validations"] + outer["x-kubernetes-validations"]
    return merged


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    node = _collapse_optional(_resolve(node, defs), defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "properties":
            out["properties"] = {name: _described(name, _structural(prop, defs)) for name, prop in value.items()}
        elif key == "items":
            out["items"] = _structural(value, defs)
        elif key == "additionalProperties":
            if node.get("x-kubernetes-preserve-unknown-fields"):
                continue  # an open object with declared properties: unknown keys are kept as they are
            if value is True:
                # A map of arbitrary values: typed as a map so CEL can range over its keys.
                out["additionalProperties"] = {"x-kubernetes-preserve-unknown-fields": True}
            elif isinstance(value, dict):
                out["additionalProperties"] = _structural(value, defs)
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        elif key == "const":
            out["enum"] = [value]
        elif key == "default" and value is None:
            continue
        else:
            out[key] = value
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


def _described(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    if not schema.get("description"):
        raise ValueError(f"field {name!r} has no description; `kubectl explain` would show nothing")
    return schema


def immutability_rules(info: KindInfo) -> list[dict[str, str]]:
    """Root-level CEL: fields that shape the run lock once a pod of it started running (status.runStartedTime;
    while the Job waits for a node or for quota a change replaces the waiting Job); the inputs the Job was built
    from lock once it exists (status.startTime)."""
    run_started = (
        "is immutable once the run's first pod started (status.runStartedTime); while the Job waits for a node or "
        "quota it may change and the operator replaces the waiting Job"
    )
    job_exists = "is immutable once the workload Job exists (status.startTime): the Job was built from it"
    tiers = (
        ("runStartedTime", run_started, info.immutable_after_start),
        ("startTime", job_exists, info.immutable_once_job_exists),
    )
    return [
        _unchanged_once(
            status_field, field,
            f"spec.{field} {why}; create a new {info.kind} with another name to run it differently"
            + ("; or change it together with raising spec.retry on a Failed run" if status_field == "runStartedTime"
               else ""),
            retry_may_change=status_field == "runStartedTime",
        )
        for status_field, why, fields in tiers
        for field in fields
    ]


def _unchanged_once(status_field: str, field: str, message: str, retry_may_change: bool = False) -> dict[str, str]:
    same = (
        f"(has(self.spec.{field}) == has(oldSelf.spec.{field}) && "
        f"(!has(self.spec.{field}) || self.spec.{field} == oldSelf.spec.{field}))"
    )
    # A retry in place starts a new run: its shape may change with it (spec.retry itself may only be raised on a
    # Failed run, by retry_rules), e.g. a smaller batch after OutOfMemory.
    retried = (
        " || (has(self.spec.retry) && self.spec.retry > (has(oldSelf.spec.retry) ? oldSelf.spec.retry : 0))"
        if retry_may_change else ""
    )
    return {
        "rule": f"!has(oldSelf.status) || !has(oldSelf.status.{status_field}) || {same}{retried}",
        "message": message,
        "fieldPath": f".spec.{field}",
        "reason": "FieldValueForbidden",
    }


def retry_rules(info: KindInfo) -> list[dict[str, str]]:
    """Root-level CEL: spec.retry may be raised only while the run is Failed (the field's own rule forbids lowering
    it). A run that succeeded is final; one still running has nothing to retry yet."""
    return [
        {
            "rule": "!has(oldSelf.spec.retry) || !has(self.spec.retry) || self.spec.retry <= oldSelf.spec.retry || "
            "(has(oldSelf.status) && has(oldSelf.status.phase) && oldSelf.status.phase == 'Failed')",
            "message": "spec.retry can be raised only while status.phase is Failed; a run that succeeded is final "
            f"(create a new {info.kind} with another name to run it again)",
            "fieldPath": ".spec.retry",
            "reason": "FieldValueForbidden",
        }
    ]


# Children are named NAME-<suffix>; the longest suffix plus a Job pod's hash must fit in a 63-character label.
MAX_NAME_LENGTH = 40


def crd_for(info: KindInfo) -> dict[str, Any]:
    spec_schema = model_schema(info.spec_model)
    status_schema = model_schema(info.status_model)
    spec_schema["description"] = info.spec_model.__doc__.strip()
    status_schema["description"] = info.status_model.__doc__.strip()
    root = {
        "type": "object",
        "description": info.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this object: mmft.io/v1alpha1."},
            "kind": {"type": "string", "description": f"Kind of this object: {info.kind}."},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
        "x-kubernetes-validations": [
            {
                "rule": f"self.metadata.name.size() <= {MAX_NAME_LENGTH} && "
                "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
                "message": f"metadata.name must be a DNS-1035 label of at most {MAX_NAME_LENGTH} characters "
                "(lowercase letters, digits, '-', starting with a letter) so its children's names fit",
                "reason": "FieldValueInvalid",
            },
            *immutability_rules(info),
            *retry_rules(info),
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": info.crd_name,
            "labels": {"app.kubernetes.io/name": "mmft", "app.kubernetes.io/part-of": "mmft"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [column.to_crd() for column in info.printer_columns],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD, for every kind."""
    return {f"{GROUP}_{info.plural}.yaml": crd_for(info) for info in ALL_KINDS}
