"""The ``hwnas`` command line: one module per command group, each adding its subparsers.

The CLI is thin (STYLE.md): a handler turns flags into a config and calls one library function.
Heavy imports (torch, onnx, sklearn) happen inside handlers, so ``hwnas --help`` and
``hwnas agent ...`` stay light. A :class:`~hwnas.errors.UserError` becomes one line on stderr and
exit status 2; ``--verbose`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from hwnas.errors import UserError

# Command modules in the order ``hwnas --help`` lists them. Each defines ``add_parsers(sub)``.
COMMAND_MODULES = ("agent", "devices", "measure", "lut", "latency", "search", "quantize", "export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwnas",
        description="Hardware-aware profiling and constrained NAS for edge devices.",
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="show tracebacks and debug logs"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"hwnas.cli.{name}").add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        if args.verbose:
            raise
        print(f"hwnas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hwnas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
