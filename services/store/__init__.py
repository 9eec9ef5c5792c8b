"""Persistence: peewee records, the database and its migrations, and the Redis queues."""
