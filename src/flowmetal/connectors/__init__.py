"""Connectors: the only parts of Flowmetal that touch the world. Each takes calls
from the store, performs them, and reports the outcome back to the store."""
