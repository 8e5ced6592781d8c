"""The hwnas device agent: times model files the host sends, pinned to one core.

Runs on the device (a Raspberry Pi, a phone, one core of a server) with only the Python standard
library, numpy and one runtime (onnxruntime, or TFLite through ai-edge-litert / tflite-runtime).
It never imports torch or ``hwnas``: the host pushes this package as plain source files.

Entry points: ``python -m device_agents stdio`` (JSON lines on stdin/stdout, what SSH, ``--exec``
devices and the ``local`` device use) and ``python -m device_agents start --port N --token-file F``
(TCP, token required). The protocol is described in :mod:`device_agents.protocol`.
"""

from __future__ import annotations

__version__ = "0.3.0"
PROTOCOL_VERSION = 1
