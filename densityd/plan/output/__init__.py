"""The planner's output: the densityd.plan/v1 and densityd.fleet-plan/v1 documents and the tables.
Pure formatting of plan.core answers; imports nothing that does I/O.
"""
