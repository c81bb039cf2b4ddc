"""Language detection: whether a text goes through jieba and the zh->en translator, or straight to CLIP.

The mixed-language rule: a text is Chinese when its Han characters are at least half of its words, where
each Han character counts as one word (Chinese writes a word in one or two characters) and each run of
other letters (Latin, kana, Cyrillic, ...) counts as one word. Digits, punctuation, emoji and spaces do not
count. So "一只猫在桌子上" and "我爱Python编程" (4 Han, 1 word) are Chinese, "两只狗 in the snow" (3 and 3)
is Chinese, and "a red car on the beach 车" (1 Han, 6 words) is English: translating it whole would lose
the English the caller wrote for one character, which the CLIP text tower still sees as it is.

HTML entities are decoded before counting (twice, as the CLIP tokenizer decodes them), so "&#22823;&#29399;"
is as Chinese as "大狗".
"""

from __future__ import annotations

import html
import re

# CJK Unified Ideographs, Extension A, Compatibility Ideographs, and Extensions B-F (supplementary planes).
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef"
_HAN_CHARACTER = re.compile(f"[{_HAN}]")
# A run of letters that are not Han: [^\W\d_] is "a letter" in Python's Unicode-aware re.
_OTHER_WORD = re.compile(f"(?:(?![{_HAN}])[^\\W\\d_])+")

CHINESE = "zh"
ENGLISH = "en"


def unescape_entities(text: str) -> str:
    """The text with HTML entities decoded, as the CLIP tokenizer decodes them (double-escaped too)."""
    return html.unescape(html.unescape(text)) if "&" in text else text


def detect_language(text: str) -> str:
    """CHINESE when Han characters are at least half of the text's words (see the module docstring)."""
    text = unescape_entities(text)
    han = len(_HAN_CHARACTER.findall(text))
    if han == 0:
        return ENGLISH
    return CHINESE if han >= len(_OTHER_WORD.findall(text)) else ENGLISH
