"""``hwnas devices add|list|probe|remove``: the device registry."""

from __future__ import annotations

import argparse
import os

from hwnas.cli._common import add_json_flag, emit
from hwnas.errors import UserError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("devices", help="register, list and probe devices")
    dsub = parser.add_subparsers(dest="devices_cmd", metavar="ACTION", required=True)

    p = dsub.add_parser("add", help="register a device reached over TCP, SSH or a command")
    p.add_argument("name")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--tcp", metavar="HOST:PORT", help="an agent started with 'hwnas agent start'")
    how.add_argument("--ssh", metavar="USER@HOST[:PORT]", help="a device reachable by SSH")
    how.add_argument(
        "--exec",
        metavar="COMMAND",
        dest="exec_command",
        help="a command that runs the agent on stdio (or, with --push, starts Python on the device)",
    )
    p.add_argument("--token-file", help="TCP: file holding the agent's token")
    p.add_argument("--key", help="SSH: private key file (default: ssh-agent / ~/.ssh keys)")
    p.add_argument("--known-hosts", help="SSH: extra known_hosts file to trust")
    p.add_argument(
        "--trust-new-host",
        action="store_true",
        help="SSH: accept an unknown host key now and remember it",
    )
    p.add_argument(
        "--python", default="python3", help="SSH: Python on the device (default python3)"
    )
    p.add_argument(
        "--remote-dir",
        help="SSH: where the agent's code is cached on the device (default ~/.cache/hwnas/agents)",
    )
    p.add_argument(
        "--push",
        action="store_true",
        help="exec: COMMAND starts a Python interpreter; hwnas sends it the agent's code",
    )
    p.add_argument("--runtime", choices=("onnxruntime", "tflite"), help="default runtime")
    p.add_argument("--core", type=int, help="core to pin measurements to (default: the agent's)")
    p.add_argument(
        "--replace", action="store_true", help="overwrite an existing device of that name"
    )
    p.add_argument("--no-probe", action="store_true", help="register without connecting first")
    p.set_defaults(handler=_add)

    p = dsub.add_parser("list", help="list devices")
    add_json_flag(p)
    p.set_defaults(handler=_list)

    p = dsub.add_parser("probe", help="connect and print the device fingerprint")
    p.add_argument("name")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per exchange")
    add_json_flag(p)
    p.set_defaults(handler=_probe)

    p = dsub.add_parser("remove", help="forget a device")
    p.add_argument("name")
    p.set_defaults(handler=_remove)


def _split_host_port(text: str, default_port: int | None) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, ""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port:
        if default_port is None:
            raise UserError(f"{text!r}: expected HOST:PORT")
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"{text!r}: bad port {port!r}")
    if not host:
        raise UserError(f"{text!r}: missing host")
    return host, int(port)


def _device_from_args(args: argparse.Namespace):
    from hwnas.devices.registry import DeviceConfig

    common = {"runtime": args.runtime, "core": args.core}
    if args.tcp:
        if not args.token_file:
            raise UserError(
                "--tcp needs --token-file (the agent refuses clients without its token)"
            )
        if not os.path.isfile(args.token_file):
            raise UserError(f"token file {args.token_file} does not exist")
        host, port = _split_host_port(args.tcp, None)
        return DeviceConfig(
            args.name,
            "tcp",
            host=host,
            port=port,
            token_file=os.path.abspath(args.token_file),
            **common,
        )
    if args.ssh:
        user, sep, rest = args.ssh.partition("@")
        if not sep or not user:
            raise UserError(f"--ssh {args.ssh!r}: expected USER@HOST[:PORT]")
        host, port = _split_host_port(rest, 22)
        key = os.path.abspath(args.key) if args.key else None
        if key and not os.path.isfile(key):
            raise UserError(f"key file {args.key} does not exist")
        known = os.path.abspath(args.known_hosts) if args.known_hosts else None
        return DeviceConfig(
            args.name,
            "ssh",
            host=host,
            port=port,
            user=user,
            key_file=key,
            known_hosts=known,
            python=args.python,
            remote_dir=args.remote_dir,
            **common,
        )
    return DeviceConfig(args.name, "exec", command=args.exec_command, push=args.push, **common)


def _add(args: argparse.Namespace) -> int:
    from hwnas.devices.registry import add_device, load_devices

    device = _device_from_args(args)
    if device.name in load_devices() and not args.replace:
        raise UserError(f"device {device.name!r} exists; remove it first or pass --replace")
    if not args.no_probe:
        from hwnas.runs.devices import fingerprint_new

        fp = fingerprint_new(device, trust_new_host=args.trust_new_host)
        print(
            f"{device.name}: {fp.get('cpu_model')} ({fp.get('machine')}), runtimes {fp.get('runtimes')}"
        )
    add_device(device, replace=args.replace)
    print(f"added device {device.name}: {device.describe()}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from hwnas.devices.registry import load_devices

    devices = load_devices()
    rows = [
        {"name": d.name, "transport": d.transport, "where": d.describe(), **d.to_dict()}
        for d in devices.values()
    ]
    emit(
        {"devices": rows},
        args.json,
        lambda r: "\n".join(f"{x['name']:<12} {x['where']}" for x in r["devices"]),
    )
    return 0


def _probe(args: argparse.Namespace) -> int:
    from hwnas.runs.devices import probe_device

    emit(probe_device(args.name, args.timeout), args.json, _render_probe)
    return 0


def _render_probe(r: dict) -> str:
    fp = r["fingerprint"]
    lines = [f"device {r['device']} ({r['transport']}), agent {r['agent']['agent_version']}"]
    for key in (
        "cpu_model",
        "machine",
        "board",
        "cores_logical",
        "core",
        "governor",
        "freq_khz",
        "temperature_c",
        "os_release",
        "kernel",
        "python",
        "numpy",
        "runtimes",
    ):
        if key in fp:
            lines.append(f"  {key:<14} {fp[key]}")
    return "\n".join(lines)


def _remove(args: argparse.Namespace) -> int:
    from hwnas.devices.registry import remove_device

    remove_device(args.name)
    print(f"removed device {args.name}")
    return 0
