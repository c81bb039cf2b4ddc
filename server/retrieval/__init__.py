"""Cross-modal retrieval: collections of embedded images and texts, searched by any item."""
