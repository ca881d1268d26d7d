"""Serve: the exposition, the HTTP server (/metrics, /api/v1/plan) and its web config (TLS, auth).
Reads the latest Snapshot and the live plan only; never imports a source, docker or libvirt.
"""
