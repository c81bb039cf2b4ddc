"""The scene space of the demo world: a background, an object kind and a count (or an empty night city)."""

from __future__ import annotations

from dataclasses import dataclass

BACKGROUNDS = ("snow", "grass", "table", "beach", "night_city", "road")
OBJECTS = ("dog", "cat", "bird", "car", "tree")
COUNTS = (1, 2, 3)


@dataclass(frozen=True, order=True)
class Scene:
    background: str
    kind: str | None  # None only for the empty night city ("London at night")
    count: int  # 0 only for the empty night city

    def __post_init__(self) -> None:
        if self.background not in BACKGROUNDS:
            raise ValueError(f"unknown background {self.background!r}")
        if self.kind is None:
            if self.count != 0 or self.background != "night_city":
                raise ValueError("only the night city may be empty")
        elif self.kind not in OBJECTS or self.count not in COUNTS:
            raise ValueError(f"bad object {self.kind!r} x {self.count}")

    @property
    def key(self) -> str:
        return f"{self.background}/{self.kind or 'none'}/{self.count}"


ALL_SCENES: tuple[Scene, ...] = (
    *(Scene(b, k, c) for b in BACKGROUNDS for k in OBJECTS for c in COUNTS),
    Scene("night_city", None, 0),
)
