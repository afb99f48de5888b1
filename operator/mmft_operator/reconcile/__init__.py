"""Reconcilers: one per kind, on a shared engine."""
