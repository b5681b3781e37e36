"""Test instruments, kept apart the way trio keeps its fakes in `trio.testing`.

The simulated (paper) exchange, fault injection, fault-injecting storage,
scenario files and the local Binance-compatible server. Production adapters
never import this package; only the wiring that offers paper mode,
`simulate` and `fake-exchange` does.
"""
