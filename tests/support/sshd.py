"""A throwaway OpenSSH server on 127.0.0.1 for the SSH transport tests (ENVIRONMENT.md recipe).

It has its own generated ed25519 host key, accepts one generated user key for the current user,
and is gone when the fixture ends. Needs Debian's ``openssh-server`` (``/usr/sbin/sshd``).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def sshd_available() -> tuple[bool, str]:
    if not os.path.exists(SSHD):
        return False, "sshd not installed (apt-get install openssh-server)"
    if not shutil.which("ssh-keygen"):
        return False, "ssh-keygen not installed"
    return True, ""


@dataclass
class SSHServer:
    port: int
    user: str
    user_key: Path
    known_hosts: Path  # holds this server's host key, as '[127.0.0.1]:PORT ssh-ed25519 ...'
    host_key_pub: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def sshd(workdir: Path) -> Iterator[SSHServer]:
    workdir.mkdir(parents=True, exist_ok=True)
    host_key, user_key = workdir / "host_ed25519", workdir / "user_ed25519"
    for key in (host_key, user_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (workdir / "authorized_keys").write_text(user_key.with_suffix(".pub").read_text())
    port = _free_port()
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
                f"Port {port}",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
                f"PidFile {workdir / 'sshd.pid'}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "Subsystem sftp internal-sftp",
                "",
            ]
        )
    )
    os.makedirs("/run/sshd", exist_ok=True)
    subprocess.run([SSHD, "-t", "-f", str(config)], check=True)
    log = open(workdir / "sshd.log", "wb")  # noqa: SIM115 (closed in the finally below)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(
                        f"sshd did not start: {(workdir / 'sshd.log').read_text()}"
                    ) from None
                time.sleep(0.05)
        pub = host_key.with_suffix(".pub").read_text().split()
        known = workdir / "known_hosts"
        known.write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
        yield SSHServer(port, getpass.getuser(), user_key, known, " ".join(pub[:2]))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
