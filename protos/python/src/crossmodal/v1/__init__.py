"""crossmodal.v1 API stubs, generated from protos/crossmodal/v1 by `make proto`."""
