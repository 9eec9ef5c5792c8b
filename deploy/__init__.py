"""Deployment files: the gunicorn config, the runner image and the Swarm notes."""
