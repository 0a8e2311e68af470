"""The durable runtime: runs programs against an event store. The only layer with
clocks, threads and processes."""
