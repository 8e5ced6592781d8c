"""An emulated Raspberry Pi 4: a Debian bookworm arm64 userland run under qemu-user.

Test support for the device agent (``python3 -m device_agents stdio``): it proves the agent and
its runtimes work on an arm64 Pi-like system, not how fast they are (timings under emulation are
20-200x slower and mean nothing for a real Pi). Recipe and measurements: ENVIRONMENT.md, "A
Raspberry-Pi-like arm64 userland under emulation".

Build steps (each is logged with its wall time):

1. ``mmdebstrap --mode=chrootless --variant=extract`` of bookworm arm64 with ``python3`` and
   ``libstdc++6`` (extract runs no maintainer script, so nothing is emulated and no root, mount
   or user namespace is needed).
2. aarch64 wheels installed into ``ROOT/opt/site`` by the host's pip, listing every manylinux
   tag bookworm's glibc 2.36 accepts (with only ``manylinux2014`` pip silently picks old numpy
   and onnxruntime).
3. A Raspberry Pi 4 ``/proc/cpuinfo`` (4 Cortex-A72 cores) written to ``ROOT/proc/cpuinfo``:
   qemu 7.2 shows the guest the host's x86 cpuinfo, on which onnxruntime segfaults at import;
   with ``-L ROOT`` qemu opens ``ROOT/<path>`` whenever that file exists. qemu 8.1 and later
   synthesise ``/proc/cpuinfo`` for Arm guests themselves (Cortex-A72 part, host core count,
   no ``Model`` line) and ignore the file; :attr:`EmulatedPi.cpuinfo_source` says which one the
   guest sees.
4. A probe run inside the emulation checks ``platform.machine()`` and ``/proc/cpuinfo``.

What the guest sees: no chroot, so the host filesystem, except for paths that exist under ROOT
(``-L ROOT``). Host paths (models, the agent's source) therefore work as they are; ``$HOME`` is
``ROOT/home/pi`` so the runtimes' caches stay inside ROOT; ``/proc/self/*`` is qemu's own, other
``/proc`` files are the host's, and ``os.listdir("/proc")`` shows only ``cpuinfo``.

Usable as a script::

    python tests/support/emulated_pi.py build ROOT
    python tests/support/emulated_pi.py run ROOT -- python3 -c 'import platform; print(platform.machine())'
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

SUITE = "bookworm"
GUEST_PYTHON = "3.11"  # bookworm's python3; the wheels must match it
QEMU_CPU = "cortex-a72"  # Raspberry Pi 4; the default "max" CPU makes numpy matmul warn spuriously
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PYTHON_PACKAGES = ("numpy", "onnxruntime", "ai-edge-litert")
TOOLS = ("qemu-aarch64-static", "mmdebstrap")
# Every manylinux tag bookworm's glibc 2.36 accepts.
AARCH64_WHEEL_PLATFORMS = (
    "manylinux2014_aarch64",
    *(f"manylinux_2_{minor}_aarch64" for minor in range(17, 37)),
)
PI4_MODEL = "Raspberry Pi 4 Model B Rev 1.4"


def tools_available() -> tuple[bool, str]:
    """Whether the host can build the rootfs: qemu-user, mmdebstrap and pip for this Python.

    Installs nothing (CI does: ``apt-get install -y qemu-user-static mmdebstrap``).

    Returns:
        ``(True, "")`` or ``(False, reason)`` with the command that would fix it.
    """
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        fix = "apt-get install -y qemu-user-static mmdebstrap"
        how = f"install them with `{fix}`" if shutil.which("apt-get") else "apt is not available"
        return False, f"{', '.join(missing)} not on PATH ({how})"
    if importlib.util.find_spec("pip") is None:
        return False, f"pip is not installed for {sys.executable}"
    return True, ""


def host_supported() -> tuple[bool, str]:
    """Whether this machine can run qemu-aarch64-static at all (Linux on x86_64 or aarch64)."""
    machine = platform.machine()
    if sys.platform != "linux" or machine not in ("x86_64", "aarch64"):
        return False, f"emulated Pi needs a Linux x86_64/aarch64 host, not {sys.platform}/{machine}"
    return True, ""


def debian_mirror() -> str:
    """The Debian mirror apt uses for bookworm here, else ``http://deb.debian.org/debian``.

    ``HWNAS_DEBIAN_MIRROR`` overrides it; otherwise the first ``deb`` source in
    ``/etc/apt/sources.list`` or ``/etc/apt/sources.list.d/*.{list,sources}`` whose suites
    include ``bookworm`` is used (hosts that are not bookworm fall back to the default).
    """
    override = os.environ.get("HWNAS_DEBIAN_MIRROR")
    if override:
        return override.rstrip("/")
    apt = Path("/etc/apt")
    files = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    files += sorted((apt / "sources.list.d").glob("*.sources"))
    for file in files:
        if file.is_file():
            parse = _deb822_uris if file.suffix == ".sources" else _one_line_uris
            for uri, suites in parse(file.read_text(errors="replace")):
                if SUITE in suites and uri.startswith(("http://", "https://")):
                    return uri.rstrip("/")
    return DEFAULT_MIRROR


def _one_line_uris(text: str) -> list[tuple[str, list[str]]]:
    found = []
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            found.append((words[1], [words[2]]))
    return found


def _deb822_uris(text: str) -> list[tuple[str, list[str]]]:
    found = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = {}
        for line in stanza.splitlines():
            key, sep, value = line.partition(":")
            if sep and not line.startswith(("#", " ", "\t")):
                fields[key.strip().lower()] = value.split()
        if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
            found += [(uri, fields.get("suites", [])) for uri in fields.get("uris", [])]
    return found


def network_available(mirror: str, *, timeout_s: float = 10.0) -> tuple[bool, str]:
    """Whether the Debian mirror and the Python package index answer (honours proxy env vars)."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    for url in (f"{mirror}/dists/{SUITE}/InRelease", f"{index}/numpy/"):
        try:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=timeout_s):
                pass
        except (urllib.error.URLError, OSError) as error:
            return False, f"cannot reach {url}: {error}"
    return True, ""


def pi4_cpuinfo(processors: int = 4) -> str:
    """``/proc/cpuinfo`` text of a Raspberry Pi 4 Model B (BCM2711, Cortex-A72) on arm64 Linux."""
    core = (
        "BogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n"
        "CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n"
    )
    cores = "".join(f"processor\t: {index}\n{core}" for index in range(processors))
    board = "Hardware\t: BCM2835\nRevision\t: c03114\nSerial\t\t: 100000000000cafe\n"
    return cores + board + f"Model\t\t: {PI4_MODEL}\n"


@dataclasses.dataclass(frozen=True)
class EmulatedPi:
    """A built rootfs and how to run its arm64 ``python3`` under qemu-user.

    Attributes:
        root: The rootfs directory (host path).
        qemu: Absolute path of ``qemu-aarch64-static``.
        pythonpath: Extra guest ``PYTHONPATH`` entries (host paths; they may lie in or outside
            ``root``), searched before the wheels in ``root/opt/site``.
        cpuinfo_source: ``"rootfs"`` when the guest reads the Pi 4 text of ``root/proc/cpuinfo``,
            ``"qemu"`` when qemu (8.1+) serves its own Cortex-A72 text, ``"unknown"`` if unprobed.
        timings_s: ``(step, wall seconds)`` of the build.
    """

    root: Path
    qemu: str
    pythonpath: tuple[str, ...] = ()
    cpuinfo_source: str = "unknown"
    timings_s: tuple[tuple[str, float], ...] = ()

    @property
    def site_dir(self) -> Path:
        """Directory holding the aarch64 wheels (numpy, onnxruntime, ai-edge-litert)."""
        return self.root / "opt" / "site"

    @classmethod
    def open(cls, root: Path) -> EmulatedPi:
        """An :class:`EmulatedPi` for a rootfs built earlier by :func:`build_rootfs`."""
        root = Path(root).resolve()
        if not (root / "usr" / "bin" / "python3").exists() or not (root / "opt" / "site").is_dir():
            raise FileNotFoundError(f"{root} is not a rootfs built by build_rootfs")
        qemu = shutil.which("qemu-aarch64-static")
        if qemu is None:
            raise FileNotFoundError("qemu-aarch64-static is not on PATH")
        return cls(root=root, qemu=qemu)

    def with_pythonpath(self, *dirs: str | Path) -> EmulatedPi:
        """A copy whose guest ``PYTHONPATH`` also holds ``dirs`` (e.g. where the agent lies)."""
        extra = tuple(str(Path(d).resolve()) for d in dirs)
        return dataclasses.replace(self, pythonpath=self.pythonpath + extra)

    def command(self, argv: Sequence[str], *, pythonpath: Sequence[str | Path] = ()) -> list[str]:
        """The host argv that runs the guest ``python3 *argv`` in a clean environment.

        Args:
            argv: Arguments of the guest ``python3``, e.g. ``["-m", "device_agents", "stdio"]``.
            pythonpath: More guest ``PYTHONPATH`` entries for this command only.
        """
        paths = [str(Path(p).resolve()) for p in pythonpath] + list(self.pythonpath)
        paths.append(str(self.site_dir))
        env = shutil.which("env") or "/usr/bin/env"
        guest_env = [f"HOME={self.root / 'home' / 'pi'}", f"QEMU_CPU={QEMU_CPU}"]
        guest_env.append(f"PYTHONPATH={os.pathsep.join(paths)}")
        python = str(self.root / "usr" / "bin" / "python3")
        return [env, "-i", *guest_env, self.qemu, "-L", str(self.root), python, *argv]

    def shell_command(self, argv: Sequence[str], *, pythonpath: Sequence[str | Path] = ()) -> str:
        """:meth:`command` as one shell string, for ``hwnas devices add pi --exec "<string>"``."""
        return shlex.join(self.command(argv, pythonpath=pythonpath))

    def run(
        self, argv: Sequence[str], *, stdin_text: str | None = None, timeout_s: float = 180.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the guest ``python3 *argv`` to completion, capturing text stdout and stderr."""
        return subprocess.run(
            self.command(argv),
            input=stdin_text,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )


def build_rootfs(
    root: Path, *, python_packages: Sequence[str] = PYTHON_PACKAGES, mirror: str | None = None
) -> EmulatedPi:
    """Build the emulated Pi into ``root`` (absent or empty) and check it runs.

    Args:
        root: Target directory on the host (~260 MB with the default packages).
        python_packages: PyPI requirements installed as aarch64 cp311 wheels.
        mirror: Debian mirror URL; :func:`debian_mirror` when ``None``.

    Returns:
        The probed :class:`EmulatedPi`.

    Raises:
        RuntimeError: If a step fails or the guest is not an arm64 Cortex-A72.
    """
    root = Path(root).resolve()
    if root.exists() and any(root.iterdir()):
        raise RuntimeError(f"{root} is not empty")
    ok, reason = tools_available()
    if not ok:
        raise RuntimeError(reason)
    mirror = mirror or debian_mirror()
    timings: list[tuple[str, float]] = []
    mmdebstrap = [
        *("mmdebstrap", "--mode=chrootless", "--variant=extract", "--architectures=arm64"),
        *("--include=python3,libstdc++6", "--quiet", SUITE, str(root), mirror),
    ]
    _step("mmdebstrap", mmdebstrap, timings, timeout_s=600)
    site = root / "opt" / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-warn-conflicts"]
    pip += ["--disable-pip-version-check", "--only-binary=:all:", "--implementation", "cp"]
    pip += ["--python-version", GUEST_PYTHON, "--abi", "cp" + GUEST_PYTHON.replace(".", "")]
    for tag in AARCH64_WHEEL_PLATFORMS:
        pip += ["--platform", tag]
    _step("pip wheels", [*pip, "--target", str(site), *python_packages], timings, timeout_s=600)
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc" / "cpuinfo").write_text(pi4_cpuinfo())
    (root / "home" / "pi").mkdir(parents=True, exist_ok=True)  # guest $HOME: writes stay in root
    qemu = shutil.which("qemu-aarch64-static") or "qemu-aarch64-static"
    pi = EmulatedPi(root=root, qemu=qemu)
    start = time.perf_counter()
    source = _probe(pi)
    timings.append(("probe", time.perf_counter() - start))
    logger.info("probe took %.1f s; guest cpuinfo from %s", timings[-1][1], source)
    size_mb = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 1e6
    logger.info(
        "emulated Pi ready in %.1f s, %.0f MB: %s", sum(t for _, t in timings), size_mb, root
    )
    return dataclasses.replace(pi, cpuinfo_source=source, timings_s=tuple(timings))


def _step(
    name: str, argv: list[str], timings: list[tuple[str, float]], *, timeout_s: float
) -> None:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    timings.append((name, time.perf_counter() - start))
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-3000:]
        raise RuntimeError(f"{name} failed (exit {done.returncode}): {shlex.join(argv)}\n{tail}")
    logger.info("%s took %.1f s", name, timings[-1][1])


_PROBE = (
    "import json, platform\n"
    "print(json.dumps({'machine': platform.machine(), 'cpuinfo': open('/proc/cpuinfo').read()}))"
)


def _probe(pi: EmulatedPi) -> str:
    """Check the guest is aarch64 with a Cortex-A72 cpuinfo; return where the cpuinfo came from."""
    done = pi.run(["-c", _PROBE], timeout_s=120)
    if done.returncode != 0:
        raise RuntimeError(f"guest python failed (exit {done.returncode}): {done.stderr[-2000:]}")
    seen = json.loads(done.stdout)
    if seen["machine"] != "aarch64":
        raise RuntimeError(f"guest machine is {seen['machine']!r}, not aarch64")
    if seen["cpuinfo"] == pi4_cpuinfo():
        return "rootfs"
    if re.search(r"CPU part\s*: 0xd08", seen["cpuinfo"]):
        logger.warning("qemu serves its own /proc/cpuinfo (Cortex-A72, no Raspberry Pi model)")
        return "qemu"
    raise RuntimeError(f"guest /proc/cpuinfo is not a Cortex-A72:\n{seen['cpuinfo'][:500]}")


def main(argv: Sequence[str] | None = None) -> int:
    """Script entry point: ``build ROOT`` or ``run ROOT [--pythonpath DIR] -- python3 ARGS``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the rootfs into ROOT")
    build.add_argument("root", type=Path)
    run = commands.add_parser("run", help="run the guest python3 inside ROOT")
    run.add_argument("root", type=Path)
    run.add_argument("--pythonpath", action="append", default=[], help="extra guest PYTHONPATH")
    run.add_argument("args", nargs=argparse.REMAINDER, help="-- python3 ARGS...")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if options.command == "build":
        pi = build_rootfs(options.root)
        print(pi.shell_command(["-m", "device_agents", "stdio"]))
        return 0
    args = list(options.args)
    if args[:1] == ["--"]:
        args = args[1:]
    if args[:1] in (["python3"], ["python"]):
        args = args[1:]
    pi = EmulatedPi.open(options.root).with_pythonpath(*options.pythonpath)
    return subprocess.run(pi.command(args), check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
