"""Operating a node: logs (logs.py), Prometheus metrics (metrics.py) and optional
OpenTelemetry traces (tracing.py).

Every layer may report here (it is a leaf: it imports nothing else of Flowmetal),
the way every layer may use the standard `logging` module.
"""
