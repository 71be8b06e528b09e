"""The Kipu store: SQLAlchemy tables for the seed schema, sessions, migrations and token encryption."""
