"""Kipu's sensors."""
