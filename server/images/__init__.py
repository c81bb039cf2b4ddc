"""Image decoding: formats, memory estimates, resampling."""
