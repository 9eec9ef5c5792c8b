"""WSGI entry point for gunicorn: ``gunicorn -c python:trainfaas.deploy.gunicorn_conf services.wsgi:app``."""
from __future__ import annotations

import logging

from trainfaas.services.api.app import create_app
from trainfaas.services.core import logs
from trainfaas.services.core.settings import load_settings

settings = load_settings()
logs.configure(logging.INFO, settings.log_format)
app = create_app(settings)
