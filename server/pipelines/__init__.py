"""Pipelines compose backends by capability; text preparation (language, jieba, translation) lives here."""
