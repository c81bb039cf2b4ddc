"""Language detection: a text is Chinese when it contains Han characters, otherwise English."""

from __future__ import annotations

import re

# CJK Unified Ideographs, Extension A, Compatibility Ideographs, and Extensions B-F (supplementary planes).
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef]")

CHINESE = "zh"
ENGLISH = "en"


def detect_language(text: str) -> str:
    return CHINESE if _HAN.search(text) else ENGLISH
