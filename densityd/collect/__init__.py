"""Collect: the sources and the sampler that runs them, each on its own schedule, into Snapshots.
May import densityd.model, config and units; only sources/ imports docker or libvirt.
"""
