"""The one-command local stack: embedded Redis, the database, the API under gunicorn and the scheduler."""
