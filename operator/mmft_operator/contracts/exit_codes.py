"""Exit codes of the workloads (trainer, dataprep, evaluator) that the operator maps to condition reasons."""

# sysexits.h EX_CONFIG: the configuration is invalid; retrying cannot help, so the Job fails at once.
CONFIG_INVALID = 78
# sysexits.h EX_DATAERR: the input data is unusable (no rows, a split came out empty).
DATA_INVALID = 65
