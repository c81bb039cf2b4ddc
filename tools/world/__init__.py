"""The demo world: procedural scenes, their English and Chinese captions, and the models trained on them."""
