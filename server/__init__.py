"""crossmodal: a gRPC inference server for cross-modal image-text similarity and retrieval."""

__version__ = "0.1.0"
