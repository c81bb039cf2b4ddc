"""`make demo`: the image-text search example end to end. Uses the server listening on HOST:PORT, or
starts one over the model repository for the example and stops it afterwards."""

from __future__ import annotations

import argparse
import subprocess
import sys

from tools.local_server import ROOT, add_server_arguments, server_at

EXAMPLE = ROOT / "clients" / "python" / "examples" / "image_text_search.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    with server_at(args.host, args.port, args.model_repository) as address:
        return subprocess.run([sys.executable, str(EXAMPLE), "--server", address], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
