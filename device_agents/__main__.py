"""``python -m device_agents stdio|start|token``: see :mod:`device_agents.cli`."""

from __future__ import annotations

import sys

from device_agents.cli import main

if __name__ == "__main__":
    sys.exit(main())
