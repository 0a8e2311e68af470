"""The deterministic, suspendable interpreter. Pure: no I/O, clocks, randomness or threads."""
