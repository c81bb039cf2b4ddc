"""Image decoding and CLIP preprocessing."""
