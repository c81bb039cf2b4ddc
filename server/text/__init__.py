"""Text handling: language detection and tokenizers."""
