"""Instance backends: where an instance runs. One base class, one file per backend."""
from __future__ import annotations

from scheduler.backends.base import InstanceBackend, Observation

__all__ = ["InstanceBackend", "Observation"]
