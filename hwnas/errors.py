"""Exceptions that the CLI turns into one clear line and exit status 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad flag, unknown name, infeasible budget, broken file).

    The CLI prints ``hwnas: error: <message>`` and exits 2; ``--verbose`` adds the traceback.
    """


class DeviceError(UserError):
    """A device could not be reached or answered with an error (names host and cause)."""
