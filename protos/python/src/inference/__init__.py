"""KServe v2 / Triton inference protocol stubs, generated from protos/inference by `make proto`."""
