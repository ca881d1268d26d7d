"""densityd: container and VM density metrics for Prometheus, and a capacity planner."""

__version__ = "0.1.0"
