"""Command line: ``nbdiag demo`` trains a small CNN on embedded digits under ``watch`` and reports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``nbdiag`` console script."""
    parser = argparse.ArgumentParser(prog="nbdiag", description="Debug neural-network training.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train a small CNN on scikit-learn's digits under nbdiag.watch")
    demo.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    demo.add_argument("--out", type=Path, default=Path("nbdiag-demo"), help="folder for the PNG/HTML output")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from nbdiag.demo import run_demo

        run_demo(steps=args.steps, out=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
