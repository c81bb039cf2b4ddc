"""Caption grammars: English paraphrases and Chinese phrasings of every scene.

Each Chinese phrasing has a preferred English paraphrase (its literal rendering); the other paraphrases
are also correct translations. The three sentences of the reference example come out exactly:
在雪地里有两条狗 -> There are two dogs in the snow, 一只猫在桌子上 -> A cat is on the table,
夜晚的伦敦 -> London at night.
"""

from __future__ import annotations

from tools.world.scenes import Scene

PLACES_EN = {
    "snow": "in the snow",
    "grass": "on the grass",
    "table": "on the table",
    "beach": "on the beach",
    "night_city": "in London at night",
    "road": "on the road",
}
NOUNS_EN = {
    "dog": ("dog", "dogs"),
    "cat": ("cat", "cats"),
    "bird": ("bird", "birds"),
    "car": ("car", "cars"),
    "tree": ("tree", "trees"),
}
NUMBERS_EN = {1: "a", 2: "two", 3: "three"}

# Where: "在X" form (inside/on, used after 在 and before 的) and the "X上/里有" form.
PLACES_ZH_IN = {
    "snow": "雪地里",
    "grass": "草地上",
    "table": "桌子上",
    "beach": "沙滩上",
    "night_city": "夜晚的伦敦",
    "road": "马路上",
}
PLACES_ZH_ON = {
    "snow": "雪地上",
    "grass": "草地上",
    "table": "桌子上",
    "beach": "沙滩上",
    "night_city": "夜晚的伦敦街头",
    "road": "路上",
}
NOUNS_ZH = {"dog": "狗", "cat": "猫", "bird": "鸟", "car": "车", "tree": "树"}
MEASURES_ZH = {"dog": "只", "cat": "只", "bird": "只", "car": "辆", "tree": "棵"}
NUMBERS_ZH = {1: "一", 2: "两", 3: "三"}

EMPTY_CITY_EN = ("London at night", "London by night", "The city of London at night", "A night in London")
EMPTY_CITY_ZH = ("夜晚的伦敦", "伦敦的夜晚", "夜里的伦敦", "夜色中的伦敦")


def _capitalise(text: str) -> str:
    return text[0].upper() + text[1:]


def english(scene: Scene) -> tuple[str, ...]:
    """English paraphrases, the canonical one first."""
    if scene.kind is None:
        return EMPTY_CITY_EN
    singular, plural = NOUNS_EN[scene.kind]
    noun = singular if scene.count == 1 else plural
    what = f"{NUMBERS_EN[scene.count]} {noun}"
    be = "is" if scene.count == 1 else "are"
    place = PLACES_EN[scene.background]
    return (
        f"There {be} {what} {place}",
        _capitalise(f"{what} {be} {place}"),
        _capitalise(f"{place} there {be} {what}"),
        _capitalise(f"{what} {place}"),
    )


def chinese(scene: Scene) -> tuple[tuple[str, int], ...]:
    """(Chinese phrasing, index of its preferred English paraphrase) pairs."""
    if scene.kind is None:
        return tuple((text, i) for i, text in enumerate(EMPTY_CITY_ZH))
    number, noun = NUMBERS_ZH[scene.count], NOUNS_ZH[scene.kind]
    measure = MEASURES_ZH[scene.kind]
    long_measure = "条" if scene.kind == "dog" else measure  # 两条狗 as well as 两只狗
    inside, on = PLACES_ZH_IN[scene.background], PLACES_ZH_ON[scene.background]
    return (
        (f"在{inside}有{number}{long_measure}{noun}", 0),
        (f"{on}有{number}{measure}{noun}", 2),
        (f"{number}{measure}{noun}在{inside}", 1),
        (f"{inside}的{number}{measure}{noun}", 3),
    )
