"""The controller runtime: everything that runs the operator between kopf and the pure planner (`reconcile`).

observe (watch cache and the reads a plan needs) -> reconcile's planner -> apply (writes through `kube`), driven by
queue (one pass at a time per resource, coalescing, backoff), resync, leader election and kopf (integration and
patches); `runtime` ties them together. See docs/architecture.md.
"""
