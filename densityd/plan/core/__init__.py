"""The pure planner core (DESIGN §6): model, quantity, cost, demand, trend, slots, packing, fleet.
Imports only the standard library, densityd.model and densityd.units: nothing that does I/O.
"""
