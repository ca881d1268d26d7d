"""The planner's input edges: a local sample plus history, the daemon's basis, Prometheus's API.
Each builds plan.core inputs from where the data lives; none computes or prints an answer.
"""
