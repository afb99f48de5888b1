"""mmft: a Kubernetes operator for multimodal fine-tuning (API group mmft.io)."""

__version__ = "0.1.0"
