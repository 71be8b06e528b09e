"""Pydantic v2 models of workflows: trigger configs, step configs, content items and graph validation."""
