"""Evaluation of fine-tuned multimodal classifiers: `mmft evaluate` (scoring models) and `mmft metrics` (metrics
from a predictions file). The metrics, predictions and threshold modules need only numpy; torch is imported by the
scoring modules alone."""
