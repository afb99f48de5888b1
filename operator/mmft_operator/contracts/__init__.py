"""Contracts shared by the operator and the workloads it runs (documented in docs/contracts.md)."""
