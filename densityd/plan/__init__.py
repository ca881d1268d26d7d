"""Plan: core/ computes, inputs/ loads, request parses, answer runs, output/ prints; command is CLI.
live is the daemon's running plan; nothing here imports a source, docker, libvirt or serve/.
"""
