"""Contracts shared by the operator and the workloads it runs (docs/contracts.md)."""
