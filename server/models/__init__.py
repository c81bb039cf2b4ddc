"""Model backends: each is a small synchronous object (preprocess / run / postprocess), no I/O loops."""
