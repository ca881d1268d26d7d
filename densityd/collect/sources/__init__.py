"""Sources: one module per backend (Docker, libvirt, the host) turned into densityd.model samples.
The only package that imports docker or libvirt; no SDK object leaves it.
"""
