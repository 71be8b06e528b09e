"""Connecting accounts: OAuth authorization with state and PKCE, token exchange, and single-flight refresh."""
