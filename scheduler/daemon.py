"""The scheduler daemon: one ``tick()`` runs the reaper, the fleet keeper and the reconciler; the
webhook deliverer (trainfaas.scheduler.webhooks) runs beside it in threads of its own.

Between ticks, the doorbell thread (``answer_doorbell()``) waits on Redis for the names of
services whose work was queued or ended (trainfaas.services.store.queues.ring), and for the end
of a cooldown or backoff, and sizes those services at once: a burst of work starts its instances
within milliseconds of its enqueue, not at the next tick, and an idle service shrinks when its
cooldown ends. It and the ticks take turns, one pass at a time.

APScheduler only calls ``tick()``; tests call it (or one part) directly with their own clock.
Only the holder of a Redis lock acts, so a second scheduler started by mistake stays idle.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

import redis
from apscheduler.schedulers.background import BackgroundScheduler
from redis.exceptions import LockError

from trainfaas.scheduler.backends.base import InstanceBackend
from trainfaas.scheduler.fleet import FleetKeeper
from trainfaas.scheduler.policy import Decision
from trainfaas.scheduler.reaper import Reaper
from trainfaas.scheduler.reconciler import Reconciler
from trainfaas.scheduler.webhooks import Deliverer
from trainfaas.services.core.settings import Settings
from trainfaas.services.store import queues, telemetry
from trainfaas.services.store.database import database
from trainfaas.services.store.records import Instance, Service, now_s

log = logging.getLogger("trainfaas.scheduler")

LOCK_KEY = "trainfaas:scheduler"
# After sizing what rang, the doorbell rests this long, gathering the rings meanwhile: a busy
# service rings at every execution's end, and one sizing per rest answers all of them.
DOORBELL_REST_S = 0.1


class Scheduler:
    """The parts of one scheduler, the backends they share and the lock that lets them act."""

    def __init__(self, settings: Settings, backend: InstanceBackend, connection: redis.Redis | None = None,
                 clock: Callable[[], float] = now_s, extra_backends: list[InstanceBackend] | None = None) -> None:
        self.settings = settings
        self.backend = backend  # the default; a service names its own in Service.backend
        self.backends = {b.name: b for b in [backend, *(extra_backends or [])]}
        self.redis = connection or queues.connect(settings.redis_url)
        self.clock = clock
        self.lock = self.redis.lock(LOCK_KEY, timeout=max(15.0, 3 * settings.tick_interval_s), thread_local=False)
        self.reaper = Reaper(settings, self.backends, self.redis, clock)
        self.fleet = FleetKeeper(settings, self.backends, clock)
        self.reconciler = Reconciler(self.redis)
        self.last_reconcile = 0.0
        self.apscheduler: BackgroundScheduler | None = None
        self.deliverer = Deliverer(settings)
        self.passes = threading.Lock()  # one tick or doorbell pass at a time: the fleet keeper is single-threaded
        self.stopping = threading.Event()
        self.doorbell: threading.Thread | None = None

    # -- leadership -------------------------------------------------------------------------

    def is_leader(self) -> bool:
        """Hold (or renew) the scheduler lock. Safe to call every tick."""
        try:
            if self.lock.owned():
                self.lock.reacquire()
                return True
            return bool(self.lock.acquire(blocking=False))
        except LockError:
            return bool(self.lock.acquire(blocking=False))
        except redis.RedisError as exc:
            log.warning("scheduler cannot reach Redis (%s); not acting this tick", exc)
            return False

    # -- one tick ---------------------------------------------------------------------------

    def tick(self) -> None:
        """Run one round. Never raises: a failing part is logged and retried next tick."""
        if not self.is_leader():
            return
        started = time.perf_counter()
        with self.passes:
            database.connect(reuse_if_open=True)
            try:
                for part in (self.reap, self.keep_fleets):
                    self._safely(part)
                if self.clock() - self.last_reconcile >= self.settings.reconcile_interval_s:
                    self._safely(self.reconcile)
                    self.last_reconcile = self.clock()
            finally:
                database.close()
        try:
            telemetry.record_tick(self.redis, time.perf_counter() - started)  # exported by the API's /metrics
        except redis.RedisError as exc:
            log.warning("scheduler cannot record its tick in Redis (%s)", exc)

    def answer_doorbell(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for services to ring, or for the next end of a cooldown or
        backoff, and size them now. True when it sized; False when nothing came or this
        scheduler does not hold the lock (the leader answers the bell)."""
        if not self.lock.owned():
            return False
        with self.passes:  # the fleet keeper's state changes under the ticks' thread
            review = self.fleet.next_review()
        if review is not None:
            timeout_s = min(timeout_s, max(0.01, review - self.clock()))
        woken = queues.rung(self.redis, timeout_s)
        with self.passes:
            chosen = woken | self.fleet.reviews_due()
            if not chosen:
                return False
            database.connect(reuse_if_open=True)

            def keep_chosen_fleets() -> None:
                self.fleet.keep_fleets(only=chosen)
            try:
                self.fleet.wake(woken)
                self._safely(keep_chosen_fleets)
            finally:
                database.close()
        return True

    def _listen(self) -> None:
        while not self.stopping.is_set():
            try:
                if self.answer_doorbell(self.settings.tick_interval_s):
                    self.stopping.wait(DOORBELL_REST_S)
                elif not self.lock.owned():
                    self.stopping.wait(self.settings.tick_interval_s)
            except redis.RedisError as exc:
                log.warning("scheduler cannot read its doorbell (%s); sizing at each tick only", exc)
                self.stopping.wait(self.settings.tick_interval_s)
            except Exception:  # noqa: BLE001 - the doorbell must outlive any one failure, as the ticks do
                log.exception("scheduler: its doorbell failed")
                self.stopping.wait(self.settings.tick_interval_s)

    def _safely(self, part: Callable[[], None]) -> None:
        try:
            part()
        except Exception:  # noqa: BLE001 - the daemon must outlive any one failure
            log.exception("scheduler: %s failed", part.__name__)

    # -- the parts ---------------------------------------------------------------------------

    def reap(self) -> None:
        """Notice dead and silent instances and overdue attempts; reset their executions."""
        self.reaper.reap()

    def keep_fleets(self) -> None:
        """Size every service's fleet (see FleetKeeper.keep_fleet)."""
        self.fleet.keep_fleets()

    def keep_fleet(self, service: Service) -> Decision | None:
        """Size one service's fleet now if it is due; the decision, or None when it was not."""
        return self.fleet.keep_fleet(service)

    def start_instance(self, service: Service) -> Instance:
        """Start one more instance of ``service`` on its backend (a failed start is recorded)."""
        return self.fleet.start_instance(service)

    def reconcile(self) -> None:
        """Put back on the queue every execution the DB says is waiting but Redis does not hold."""
        self.reconciler.reconcile(self.clock())

    # -- running under APScheduler ------------------------------------------------------------

    def start(self) -> None:
        self.apscheduler = BackgroundScheduler(daemon=True)
        self.apscheduler.add_job(self.tick, "interval", seconds=self.settings.tick_interval_s, max_instances=1, coalesce=True, id="tick",
                                 next_run_time=datetime.now())
        self.apscheduler.start()
        self.stopping.clear()
        self.doorbell = threading.Thread(target=self._listen, name="scheduler-doorbell", daemon=True)
        self.doorbell.start()
        self.deliverer.start()

    def shutdown(self, drain_timeout_s: float) -> None:
        self.deliverer.stop()
        self.stopping.set()
        if self.doorbell is not None:
            self.doorbell.join()
            self.doorbell = None
        if self.apscheduler is not None:
            self.apscheduler.shutdown(wait=True)
            self.apscheduler = None
        for backend in self.backends.values():
            backend.close(drain_timeout_s)
        try:
            if self.lock.owned():
                self.lock.release()
        except (LockError, redis.RedisError):
            pass
