"""Dynamic batching: requests from many calls join one model run."""
