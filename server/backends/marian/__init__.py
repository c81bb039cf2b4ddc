"""The Marian zh->en translator: tokenizer, decoder graphs, beam search, generation settings."""
