"""Routers of the /kipu API, one module per resource."""
