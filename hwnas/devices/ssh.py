"""SSH transport (paramiko): host keys checked, agent code pushed over SFTP, agent on an exec channel.

Host keys are checked against ``~/.ssh/known_hosts`` and hwnas' own ``known_hosts`` in its config
directory; an unknown host is refused unless the user asked to trust it (``devices add ...
--trust-new-host``), in which case its key is saved to hwnas' file. The agent's source is copied
once per version into ``~/.cache/hwnas/agents/<tag>/`` on the device, so the device needs only
Python, numpy and a runtime, no install of hwnas. Every network call has a timeout.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import shlex
import socket
from pathlib import Path

from hwnas.devices.bundle import agent_bundle
from hwnas.devices.channels import Channel
from hwnas.devices.registry import DeviceConfig
from hwnas.errors import DeviceError
from hwnas.paths import config_dir

log = logging.getLogger(__name__)


def hwnas_known_hosts() -> Path:
    return config_dir() / "known_hosts"


class SSHChannel(Channel):
    """The agent running on an SSH exec channel."""

    def __init__(self, device: DeviceConfig, timeout_s: float, trust_new_host: bool = False):
        self.client = connect(device, timeout_s, trust_new_host)
        label = f"ssh {device.user}@{device.host}:{device.port}"
        try:
            agent_dir = push_agent(self.client, timeout_s, device.remote_dir)
            transport = self.client.get_transport()
            assert transport is not None
            self.chan = transport.open_session(timeout=timeout_s)
            self.chan.settimeout(None)
            cmd = f"cd {shlex.quote(agent_dir)} && exec {device.python} -m device_agents stdio"
            self.chan.exec_command(cmd)
        except DeviceError:
            self.client.close()
            raise
        except (OSError, EOFError) as exc:
            self.client.close()
            raise DeviceError(f"{label}: could not start the agent: {exc}") from None
        except Exception as exc:  # paramiko.SSHException and friends
            self.client.close()
            raise DeviceError(f"{label}: could not start the agent: {exc}") from None
        stdin = self.chan.makefile_stdin("wb")

        def write(data: bytes) -> None:
            stdin.write(data)
            stdin.flush()

        super().__init__(label, self.chan.makefile("rb"), write)
        self._collect_stderr(self.chan.makefile_stderr("rb"))

    def close(self) -> None:
        super().close()
        with contextlib.suppress(Exception):
            self.chan.shutdown_write()
            self.chan.close()
        self.client.close()


def connect(device: DeviceConfig, timeout_s: float, trust_new_host: bool = False):
    """An authenticated ``paramiko.SSHClient``; raises DeviceError naming host and cause."""
    import paramiko

    where = f"{device.user}@{device.host}:{device.port}"
    client = paramiko.SSHClient()
    with contextlib.suppress(OSError):
        client.load_system_host_keys()
    own = hwnas_known_hosts()
    for path in filter(None, [device.known_hosts, str(own)]):
        if Path(path).exists():
            client.load_host_keys(path) if path == str(own) else _load_extra(client, path)
    if trust_new_host:
        own.parent.mkdir(parents=True, exist_ok=True)
        own.touch(exist_ok=True)
        client.load_host_keys(str(own))  # new keys are saved here on connect
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    else:
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            device.host,
            port=device.port or 22,
            username=device.user,
            key_filename=device.key_file,
            timeout=timeout_s,
            banner_timeout=timeout_s,
            auth_timeout=timeout_s,
            channel_timeout=timeout_s,
            look_for_keys=device.key_file is None,
            allow_agent=device.key_file is None,
        )
    except paramiko.BadHostKeyException:
        client.close()
        raise DeviceError(
            f"ssh {where}: the host key CHANGED since it was recorded; refusing to connect "
            f"(if the device was reinstalled, remove its line from known_hosts)"
        ) from None
    except paramiko.SSHException as exc:
        client.close()
        if "not found in known_hosts" in str(exc):
            raise DeviceError(
                f"ssh {where}: unknown host key; refusing to connect. Add it to ~/.ssh/known_hosts "
                f"(ssh-keyscan) or re-add the device with --trust-new-host"
            ) from None
        raise DeviceError(f"ssh {where}: {exc}") from None
    except socket.timeout:
        client.close()
        raise DeviceError(f"ssh {where}: timed out after {timeout_s:.0f} s") from None
    except OSError as exc:
        client.close()
        raise DeviceError(f"ssh {where}: {exc.strerror or exc}") from None
    return client


def _load_extra(client, path: str) -> None:
    """Merge a known_hosts file into the client's (system) keys without making it the save target."""
    import paramiko

    keys = paramiko.HostKeys(path)
    for host, entry in keys.items():
        for key_type, key in entry.items():
            client.get_host_keys().add(host, key_type, key)


def push_agent(client, timeout_s: float, remote_dir: str | None = None) -> str:
    """Copy the agent's sources into the device's cache dir once per version; returns that dir.

    The directory is ``remote_dir/<tag>``, by default ``~/.cache/hwnas/agents/<tag>``.
    """
    bundle = agent_bundle()
    sftp = client.open_sftp()
    sftp.get_channel().settimeout(timeout_s)
    try:
        home = sftp.normalize(".")
        base = remote_dir or posixpath.join(home, ".cache", "hwnas", "agents")
        target = posixpath.join(base, bundle.tag)
        if _exists(sftp, posixpath.join(target, "COMPLETE")):
            return target
        _makedirs(sftp, base)
        tmp = f"{target}.tmp-{id(sftp):x}"
        for rel, data in bundle.files.items():
            path = posixpath.join(tmp, rel)
            _makedirs(sftp, posixpath.dirname(path))
            with sftp.open(path, "wb") as f:
                f.write(data)
        with sftp.open(posixpath.join(tmp, "COMPLETE"), "wb") as f:
            f.write(bundle.tag.encode())
        try:
            sftp.posix_rename(tmp, target)
        except OSError:
            if not _exists(sftp, posixpath.join(target, "COMPLETE")):
                raise
        log.info("pushed agent %s to %s", bundle.tag, target)
        return target
    finally:
        sftp.close()


def _exists(sftp, path: str) -> bool:
    try:
        sftp.stat(path)
    except OSError:
        return False
    return True


def _makedirs(sftp, path: str) -> None:
    parts = []
    while path not in ("", "/") and not _exists(sftp, path):
        parts.append(path)
        path = posixpath.dirname(path)
    for p in reversed(parts):
        with contextlib.suppress(OSError):
            sftp.mkdir(p)
