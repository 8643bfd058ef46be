"""Django's PostgreSQL backend, answering at once while PostgreSQL is known unreachable."""
