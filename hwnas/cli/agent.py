"""``hwnas agent stdio|start|token``: the device agent (see :mod:`device_agents.cli`)."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from device_agents.cli import add_subcommands

    parser = sub.add_parser(
        "agent",
        help="run the device agent (on the device)",
        description="Run the hwnas device agent: 'stdio' for SSH/exec/local use, 'start' for TCP.",
    )
    add_subcommands(parser.add_subparsers(dest="agent_cmd", metavar="MODE", required=True))
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from device_agents.cli import run

    return run(args)
