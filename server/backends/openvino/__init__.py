"""OpenVINO: the CLIP towers and the translator compiled for the CPU (bf16 on AMX), beside ONNX Runtime."""
