"""crossmodal: a gRPC inference server for cross-modal image-text similarity and retrieval."""
