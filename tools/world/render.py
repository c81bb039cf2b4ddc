"""Renders 224x224 scenes of the demo world with Pillow: a background and 0-3 objects of one kind.

Everything random (colour shades, sizes, positions, facing) comes from the caller's `random.Random`, so a
seed gives the same picture. Objects of one scene stand in separate slots, so they can be counted.
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw

from tools.world.scenes import Scene

SIZE = 224
Colour = tuple[int, int, int]


def _shade(rng: random.Random, colour: Colour, spread: int = 18) -> Colour:
    return tuple(max(0, min(255, c + rng.randint(-spread, spread))) for c in colour)


def _sky_and_ground(draw: ImageDraw.ImageDraw, rng, sky: Colour, ground: Colour, horizon: int) -> None:
    draw.rectangle([0, 0, SIZE, horizon], fill=_shade(rng, sky))
    draw.rectangle([0, horizon, SIZE, SIZE], fill=_shade(rng, ground))


def background(kind: str, rng: random.Random) -> tuple[Image.Image, int]:
    """The background picture and the y where objects stand (the ground line's upper limit)."""
    image = Image.new("RGB", (SIZE, SIZE))
    draw = ImageDraw.Draw(image)
    horizon = rng.randint(70, 100)
    if kind == "snow":
        _sky_and_ground(draw, rng, (190, 205, 225), (245, 247, 252), horizon)
        for _ in range(120):
            x, y = rng.randrange(SIZE), rng.randrange(horizon, SIZE)
            draw.ellipse([x, y, x + 3, y + 2], fill=(225, 230, 240))
    elif kind == "grass":
        _sky_and_ground(draw, rng, (120, 180, 240), (70, 150, 60), horizon)
        for _ in range(160):
            x, y = rng.randrange(SIZE), rng.randrange(horizon + 4, SIZE)
            draw.line([x, y, x + rng.randint(-3, 3), y - 6], fill=(40, 110, 35), width=1)
    elif kind == "table":
        wood = _shade(rng, (150, 100, 60), 20)
        draw.rectangle([0, 0, SIZE, SIZE], fill=wood)
        for y in range(0, SIZE, rng.randint(14, 22)):
            draw.line([0, y, SIZE, y + rng.randint(-4, 4)], fill=tuple(c - 35 for c in wood), width=2)
        horizon = rng.randint(40, 70)
    elif kind == "beach":
        sea = horizon + rng.randint(20, 35)
        _sky_and_ground(draw, rng, (130, 195, 245), (230, 210, 160), horizon)
        draw.rectangle([0, horizon, SIZE, sea], fill=_shade(rng, (40, 110, 190)))
        draw.line([0, sea, SIZE, sea], fill=(250, 250, 250), width=3)
        horizon = sea
    elif kind == "night_city":
        _sky_and_ground(draw, rng, (15, 20, 50), (30, 30, 38), horizon + 40)
        x = -rng.randint(0, 20)
        while x < SIZE:
            width, top = rng.randint(24, 44), rng.randint(20, horizon + 10)
            draw.rectangle([x, top, x + width, horizon + 40], fill=_shade(rng, (35, 35, 50), 10))
            for wy in range(top + 5, horizon + 34, 9):
                for wx in range(x + 4, x + width - 4, 8):
                    if rng.random() < 0.55:
                        draw.rectangle([wx, wy, wx + 3, wy + 4], fill=_shade(rng, (250, 215, 90), 20))
            x += width + rng.randint(2, 8)
        moon = rng.randint(150, 200)
        draw.ellipse([moon, 8, moon + 16, 24], fill=(240, 240, 210))
        horizon += 40
    elif kind == "road":
        _sky_and_ground(draw, rng, (150, 190, 230), (95, 95, 100), horizon)
        draw.rectangle([0, horizon, SIZE, horizon + 8], fill=_shade(rng, (80, 140, 60)))
        middle = (horizon + SIZE) // 2 + 10
        for x in range(rng.randint(-20, 0), SIZE, 40):
            draw.rectangle([x, middle, x + 22, middle + 4], fill=(240, 240, 240))
    else:
        raise ValueError(f"unknown background {kind!r}")
    return image, horizon


class _Pen:
    """Draws in object coordinates (unit = s pixels, origin at the feet's centre, optionally mirrored)."""

    def __init__(self, draw: ImageDraw.ImageDraw, x: float, y: float, scale: float, mirror: bool) -> None:
        self.draw, self.x, self.y, self.s, self.m = draw, x, y, scale, -1 if mirror else 1

    def _p(self, px: float, py: float) -> tuple[float, float]:
        return self.x + self.m * px * self.s, self.y - py * self.s

    def box(self, x0, y0, x1, y1):
        (a, b), (c, d) = self._p(x0, y0), self._p(x1, y1)
        return [min(a, c), min(b, d), max(a, c), max(b, d)]

    def ellipse(self, x0, y0, x1, y1, fill) -> None:
        self.draw.ellipse(self.box(x0, y0, x1, y1), fill=fill)

    def rect(self, x0, y0, x1, y1, fill) -> None:
        self.draw.rectangle(self.box(x0, y0, x1, y1), fill=fill)

    def poly(self, points, fill) -> None:
        self.draw.polygon([self._p(px, py) for px, py in points], fill=fill)

    def line(self, points, fill, width: float) -> None:
        self.draw.line([self._p(px, py) for px, py in points], fill=fill, width=max(1, round(width * self.s)))


def draw_dog(pen: _Pen, rng: random.Random) -> None:
    fur = _shade(rng, rng.choice([(140, 90, 45), (200, 160, 100), (60, 45, 35), (175, 170, 160)]))
    dark = tuple(max(0, c - 50) for c in fur)
    for leg in (-14, -7, 9, 15):
        pen.rect(leg - 2, 0, leg + 2, 11, dark)
    pen.ellipse(-18, 8, 18, 22, fur)  # body
    pen.line([(-17, 18), (-25, 26)], dark, 3)  # tail, up and back
    pen.ellipse(12, 16, 28, 31, fur)  # head
    pen.ellipse(24, 18, 33, 24, fur)  # snout
    pen.ellipse(31, 20, 34, 23, (20, 20, 20))  # nose
    pen.ellipse(13, 16, 18, 29, dark)  # floppy ear


def draw_cat(pen: _Pen, rng: random.Random) -> None:
    fur = _shade(rng, rng.choice([(225, 140, 50), (130, 130, 135), (35, 35, 35), (240, 240, 235)]))
    dark = tuple(max(0, c - 60) for c in fur)
    pen.ellipse(-12, 0, 10, 14, fur)  # sitting body
    pen.line([(-11, 3), (-20, 8), (-18, 24)], fur, 3)  # tail curling up
    pen.ellipse(0, 12, 16, 26, fur)  # head
    pen.poly([(1, 22), (4, 32), (7, 24)], fur)  # pointed ears
    pen.poly([(9, 24), (13, 32), (15, 21)], fur)
    pen.ellipse(9, 18, 12, 21, (90, 200, 90))  # eye
    pen.line([(14, 17), (22, 18)], dark, 0.7)  # whiskers
    pen.line([(14, 16), (22, 14)], dark, 0.7)


def draw_bird(pen: _Pen, rng: random.Random) -> None:
    feathers = _shade(rng, rng.choice([(200, 40, 40), (40, 90, 200), (235, 200, 40)]))
    pen.line([(-2, 0), (-2, 5)], (90, 70, 40), 1)
    pen.line([(2, 0), (2, 5)], (90, 70, 40), 1)
    pen.ellipse(-9, 4, 8, 14, feathers)  # body
    pen.poly([(-8, 11), (-15, 15), (-14, 8)], feathers)  # tail
    pen.ellipse(4, 10, 13, 19, feathers)  # head
    pen.poly([(12, 16), (18, 14), (12, 13)], (250, 160, 30))  # beak
    pen.poly([(-4, 10), (4, 10), (-2, 20)], tuple(c - 40 for c in feathers))  # wing up


def draw_car(pen: _Pen, rng: random.Random) -> None:
    paint = _shade(
        rng, rng.choice([(210, 30, 30), (30, 80, 200), (240, 200, 30), (40, 160, 70), (235, 235, 235)])
    )
    pen.rect(-30, 5, 30, 17, paint)  # body
    pen.poly([(-16, 17), (-10, 27), (12, 27), (19, 17)], paint)  # cabin
    pen.poly([(-12, 18), (-8, 25), (0, 25), (0, 18)], (170, 210, 235))  # windows
    pen.poly([(3, 18), (3, 25), (10, 25), (15, 18)], (170, 210, 235))
    for wheel in (-18, 18):
        pen.ellipse(wheel - 7, 0, wheel + 7, 12, (25, 25, 25))
        pen.ellipse(wheel - 3, 3, wheel + 3, 9, (160, 160, 160))
    pen.rect(27, 11, 30, 14, (250, 240, 150))  # headlight


def draw_tree(pen: _Pen, rng: random.Random) -> None:
    leaves = _shade(rng, rng.choice([(40, 130, 40), (70, 160, 50), (30, 100, 60)]))
    pen.rect(-3, 0, 3, 22, _shade(rng, (110, 70, 35)))  # trunk
    if rng.random() < 0.5:
        pen.ellipse(-14, 16, 14, 44, leaves)  # round crown
        pen.ellipse(-18, 14, 2, 32, leaves)
        pen.ellipse(-2, 14, 18, 32, leaves)
    else:
        pen.poly([(-15, 12), (15, 12), (0, 50)], leaves)  # pine


DRAWERS = {"dog": draw_dog, "cat": draw_cat, "bird": draw_bird, "car": draw_car, "tree": draw_tree}
WIDTHS = {"dog": 64, "cat": 44, "bird": 34, "car": 66, "tree": 38}  # in object units, for slot fitting


def render(scene: Scene, rng: random.Random) -> Image.Image:
    image, ground = background(scene.background, rng)
    if not scene.count:
        return image
    draw = ImageDraw.Draw(image)
    slot = SIZE / scene.count
    for index in range(scene.count):
        # At most three quarters of a slot wide, so neighbours never touch and can be counted.
        scale = min(rng.uniform(1.3, 2.1), 0.75 * slot / WIDTHS[scene.kind])
        centre = slot * (index + 0.5) + rng.uniform(-0.06, 0.06) * slot
        feet = rng.uniform(ground + 35, SIZE - 8)
        DRAWERS[scene.kind](_Pen(draw, centre, feet, scale, rng.random() < 0.5), rng)
    return image
