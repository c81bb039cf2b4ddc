"""gRPC interceptors of the server's port: bearer tokens, undecodable requests."""
