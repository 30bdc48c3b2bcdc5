"""Alembic migrations of the history's schema, run by ``Store.open`` itself."""
