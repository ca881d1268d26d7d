"""Backends densityd samples: one module per backend, the only places that import its SDK."""
