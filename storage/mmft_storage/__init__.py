"""Cloud Storage for the mmft workloads (dataprep, trainer, evaluator): the one helper they share (gcs)."""
