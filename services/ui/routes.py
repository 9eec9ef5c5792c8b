"""The web UI's blueprint with every page registered on it: the API app mounts it under /ui/."""
from __future__ import annotations

from trainfaas.services.ui import data, fleet, hooks, inference, runs, signin, wizard
from trainfaas.services.ui.web import bp

__all__ = ["bp", "data", "fleet", "hooks", "inference", "runs", "signin", "wizard"]
