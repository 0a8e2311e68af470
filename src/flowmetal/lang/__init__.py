"""Source text -> checked, compiled program. Pure: no I/O."""
