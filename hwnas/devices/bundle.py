"""The agent's code as the host pushes it to a device: its source files, a tag, a zip.

The tag (``<version>-<sha256 of the sources, 12 hex>``) names the cache directory on the device
(``~/.cache/hwnas/agents/<tag>/``), so an unchanged agent is pushed once and two hwnas versions
never mix files.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from hwnas.devices.channels import agent_source_root


@dataclass(frozen=True)
class AgentBundle:
    """``files`` maps relative paths (``device_agents/x.py``) to their bytes."""

    files: dict[str, bytes]
    tag: str

    def zip_bytes(self) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in sorted(self.files):
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                zf.writestr(info, self.files[name])
        return buf.getvalue()


@functools.lru_cache(maxsize=1)
def agent_bundle() -> AgentBundle:
    import device_agents

    package = Path(device_agents.__file__).resolve().parent
    root = agent_source_root()
    files = {
        str(path.relative_to(root)): path.read_bytes() for path in sorted(package.glob("*.py"))
    }
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    return AgentBundle(files, f"{device_agents.__version__}-{digest.hexdigest()[:12]}")


# Run by ``python -c`` on the device for ``--exec ... --push`` devices: reads one JSON line with the
# zipped agent from stdin, unpacks it once into a versioned cache directory, then serves on stdio.
BOOTSTRAP = r"""
import base64, io, json, os, sys, tempfile, zipfile
m = json.loads(sys.stdin.buffer.readline())
bases = [os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
         tempfile.gettempdir()]
for base in bases:
    d = os.path.join(base, "hwnas", "agents", m["tag"])
    if os.path.exists(os.path.join(d, "COMPLETE")):
        break
    try:
        t = "%s.tmp%d" % (d, os.getpid())
        zipfile.ZipFile(io.BytesIO(base64.b64decode(m["zip"]))).extractall(t)
        open(os.path.join(t, "COMPLETE"), "w").close()
        try:
            os.rename(t, d)
        except OSError:
            pass
        break
    except OSError:
        continue
sys.path.insert(0, d)
from device_agents.cli import main
sys.exit(main(["stdio"] + m.get("args", [])))
"""


def bootstrap_line(extra_args: list[str] | None = None) -> bytes:
    """The first stdin line a pushed agent's bootstrap expects."""
    import json

    bundle = agent_bundle()
    message = {
        "tag": bundle.tag,
        "zip": base64.b64encode(bundle.zip_bytes()).decode("ascii"),
        "args": list(extra_args or []),
    }
    return json.dumps(message).encode("utf-8") + b"\n"
