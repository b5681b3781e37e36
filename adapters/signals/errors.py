"""The one error a signal source raises to stop `run`: a setting that can never work."""

from __future__ import annotations

from engine.errors import TrioBotError


class SignalSourceError(TrioBotError):
    """The signal service refused us for good (wrong token, unknown stream): retrying cannot help."""
