"""WSGI entry point for gunicorn: ``gunicorn -c python:trainfaas.deploy.gunicorn_conf services.wsgi:app``."""
from __future__ import annotations

from trainfaas.services.api.app import create_app

app = create_app()
