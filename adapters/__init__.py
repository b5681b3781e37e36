"""Implementations of the engine's ports: exchanges, storage, signal sources."""
