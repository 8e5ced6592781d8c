"""The device side stays lean: no torch, no hwnas, only stdlib + numpy + a runtime."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED_THIRD_PARTY = {"numpy", "onnxruntime", "ai_edge_litert", "tflite_runtime"}


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def test_import_device_agents_and_hwnas_cli_loads_no_torch() -> None:
    out = run_python("import sys, device_agents, hwnas, hwnas.cli; print('torch' in sys.modules)")
    assert out.strip() == "False"


def test_hwnas_agent_help_loads_no_torch() -> None:
    code = (
        "import sys\n"
        "from hwnas.cli import main\n"
        "try:\n    main(['agent', 'start', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('RESULT', 'torch' in sys.modules, 'sklearn' in sys.modules)"
    )
    line = next(x for x in run_python(code).splitlines() if x.startswith("RESULT"))
    assert line == "RESULT False False"


def test_hwnas_help_loads_no_torch() -> None:
    code = (
        "import sys\nfrom hwnas.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('RESULT', 'torch' in sys.modules)"
    )
    line = next(x for x in run_python(code).splitlines() if x.startswith("RESULT"))
    assert line == "RESULT False"


def test_device_agents_sources_import_only_stdlib_numpy_and_runtimes() -> None:
    stdlib = set(sys.stdlib_module_names)
    for path in (ROOT / "device_agents").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in stdlib or top in ALLOWED_THIRD_PARTY or top == "device_agents", (
                    f"{path.name} imports {name}"
                )
        text = path.read_text()
        assert 'import_module("torch' not in text and "import_module('hwnas" not in text
