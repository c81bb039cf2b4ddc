"""The crossmodal.v1.CrossModal gRPC service: message conversion and response-size checks."""
