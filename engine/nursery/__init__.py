"""Everything that owns tasks and time: the engine, the wave nursery, services."""
