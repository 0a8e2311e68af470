"""Flowmetal: durable, evented, asynchronous programs in a deterministic Python subset."""

__version__ = "0.1.0"
