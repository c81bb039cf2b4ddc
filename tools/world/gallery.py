"""Renders demo-world pictures into a folder tree (one folder per scene kind), to index and search.

python -m tools.world.gallery /tmp/gallery --per-scene 3
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from tools.world.render import render
from tools.world.scenes import ALL_SCENES


def render_gallery(out: Path, per_scene: int, seed: int) -> int:
    rng = random.Random(seed)
    count = 0
    for scene in ALL_SCENES:
        folder = out / scene.key
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(per_scene):
            render(scene, rng).save(folder / f"{number}.jpg", "JPEG", quality=90)
            count += 1
    return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.world.gallery",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", type=Path, help="folder to write (scene folders with numbered JPEGs)")
    parser.add_argument("--per-scene", type=int, default=3, help="pictures per scene (default: 3)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the pictures (default: 7)")
    args = parser.parse_args(argv)
    if args.per_scene < 1:
        parser.error("--per-scene must be at least 1")
    count = render_gallery(args.out, args.per_scene, args.seed)
    print(f"{count} pictures of {len(ALL_SCENES)} scenes in {args.out}")


if __name__ == "__main__":
    main()
