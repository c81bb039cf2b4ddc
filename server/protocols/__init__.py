"""Protocol adapters over the engine: the common call runner, crossmodal.v1, KServe v2, health."""
