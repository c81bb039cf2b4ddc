"""CLIP towers: the image and text embedders, their tokenizer and image preprocessing."""
