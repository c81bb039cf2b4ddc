"""gRPC adapters: convert messages, call the engine in worker threads, map errors to status codes."""
