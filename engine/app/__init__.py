"""Wiring: puts the engine together with adapters for the commands and examples.

The only part of `engine` allowed to import `adapters`.
"""
