"""Pure status computation: conditions and what a workload Job and its pods show."""
