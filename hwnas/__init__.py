"""hwnas: hardware-aware profiling and constrained neural-architecture search for edge devices.

Importing ``hwnas`` is cheap and never imports torch; the heavy parts load when used.
"""

from __future__ import annotations

__version__ = "0.1.0"
