"""Alembic migrations of the Kipu store."""
