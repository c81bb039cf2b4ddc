"""Benchmarks of the crossmodal server against in-process ONNX Runtime, transformers and CTranslate2."""
