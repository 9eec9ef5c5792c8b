"""Deployment files: gunicorn config, runner image, compose/swarm files."""
