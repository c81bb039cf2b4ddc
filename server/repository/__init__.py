"""The Triton-style model repository: config.pbtxt parsing, version discovery and policy, loading."""
