"""Imported by an instance's fork server before it forks any work process (see
trainfaas.services.worker.work_process): what every work process would otherwise do again at its
start, done once. Platform code only: adapter modules are imported by each work process, after it
has become the work user. It also makes the fork server end with its instance."""
import signal

from trainfaas.adapters import catalog
from trainfaas.functions import noop, run, train  # noqa: F401 - imported to be inherited
from trainfaas.services.core.processes import end_with_parent

catalog.remember_entry_points()
# The fork server ends with its instance, and its work processes with it (each ends with its
# parent, the fork server). Its own way to notice, the end of a pipe the instance holds, never
# comes while a work process lives: each one holds a copy of that pipe's end (multiprocessing
# hands it to every child of the server). Without this, a training of a killed instance trains on,
# as an orphan, for an attempt that was already reset.
end_with_parent(signal.SIGKILL)
