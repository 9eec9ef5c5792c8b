"""The scheduler daemon: fleet sizing, the reaper and the reconciler, on APScheduler."""
