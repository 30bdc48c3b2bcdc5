"""The scan history: every run recorded in SQLite or PostgreSQL, and questions over time."""
