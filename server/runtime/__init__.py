"""ONNX Runtime sessions: execution providers, session options, warm-up."""
