"""The capacity planner: pure functions from measured workloads to slots left (DESIGN §6)."""
