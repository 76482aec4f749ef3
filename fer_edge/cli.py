"""`fer-edge` command line. Subcommands arrive with their layers (train, eval, export, predict,
benchmark, data); `info` reports what this installation holds."""
from __future__ import annotations

import argparse
import json
import sys

from fer_edge import build_info


def _info(_args) -> int:
    print(json.dumps(build_info(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fer-edge", description="Facial expression recognition for the edge.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="show the compiled kernels, CUDA support and threading").set_defaults(func=_info)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
