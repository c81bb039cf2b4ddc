"""ONNX Runtime: sessions, execution providers, the base of ONNX-backed models."""
