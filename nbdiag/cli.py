"""Command line: ``nbdiag demo`` trains a small CNN on embedded digits under ``watch`` and reports;
``nbdiag report RUN_DIR`` writes the HTML report of a run directory."""

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
    report = commands.add_parser("report", help="write the HTML report of a run directory")
    report.add_argument("run_dir", type=Path, help="a folder written by watch(..., run_dir=...) or Monitor.save()")
    report.add_argument("--out", type=Path, default=None, help="HTML file to write (default RUN_DIR/report.html)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from nbdiag.demo import run_demo

        run_demo(steps=args.steps, out=args.out)
    elif args.command == "report":
        return write_report(args.run_dir, args.out)
    return 0


def write_report(run_dir: Path, out: Path | None = None) -> int:
    """``nbdiag report``: read the run at ``run_dir``, print its findings, write ``out`` (HTML); exit status."""
    from nbdiag.findings import findings_text
    from nbdiag.runs.run import open_run

    try:
        run = open_run(run_dir)
    except (FileNotFoundError, ValueError) as error:
        print(f"nbdiag report: {error}", file=sys.stderr)
        return 2
    out = out if out is not None else run_dir / "report.html"
    print(f"{run}\n\nfindings:\n{findings_text(run.findings())}")
    try:
        from nbdiag.views.export import to_html
    except ImportError as error:
        print(
            f"nbdiag report: the HTML export is not available in this installation ({error}); expected "
            "nbdiag.views.export.to_html; read the run in Python with nbdiag.open_run instead",
            file=sys.stderr,
        )
        return 3
    to_html(run, str(out))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
