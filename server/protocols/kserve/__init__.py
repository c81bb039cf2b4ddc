"""The KServe v2 / Triton inference protocol over the same models and batchers."""
