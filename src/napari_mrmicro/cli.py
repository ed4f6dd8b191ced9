"""``mrmicro``: the napari-mrmicro pipeline without a viewer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="mrmicro", description="MR microscopy without a viewer (napari-mrmicro).")
    commands = parser.add_subparsers(dest="command", required=True)
    p_demo = commands.add_parser(
        "demo", help="run the whole pipeline on embedded specimens and write the results")
    p_demo.add_argument("out_dir", nargs="?", default="mrmicro-demo", type=Path,
                        help="folder for the results (default: ./mrmicro-demo)")
    args = parser.parse_args(argv)
    try:
        from napari_mrmicro.demo import demo

        return demo(args.out_dir)
    except (OSError, ValueError) as error:
        print(f"mrmicro {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
