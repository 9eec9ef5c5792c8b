"""Imported by an instance's fork server before it forks any work process (see
trainfaas.services.worker.work_process): what every work process would otherwise do again at its
start, done once. Platform code only: adapter modules are imported by each work process, after it
has become the work user."""
from trainfaas.adapters import catalog
from trainfaas.functions import noop, run, train  # noqa: F401 - imported to be inherited

catalog.remember_entry_points()
