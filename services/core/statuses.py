"""The status vocabularies: one enum each for executions, models and instances.

The values are the strings stored in the database and shown by the API (seed 001's words), so
an enum member compares equal to its stored string: ``ExecutionStatus.PENDING == "pending"``.
Which change is allowed is decided by the modules that write them (the execution state machine
and the instance transitions in trainfaas.services.control); the tables below only name them.
"""
from __future__ import annotations

from enum import Enum


class _Vocabulary(str, Enum):
    def __str__(self) -> str:
        return self.value


class ExecutionStatus(_Vocabulary):
    CREATED = "created"  # the row exists, not queued yet
    PENDING = "pending"  # queued, waiting for an instance
    IN_PROGRESS = "in-progress"
    SUCCESS = "success"
    FAILED = "failed"  # the function itself failed
    TERMINATED = "terminated"  # a user stopped it
    ABORTED = "aborted"  # the platform gave up
    RERUN = "rerun"  # reset and queued again


TERMINAL_EXECUTION: frozenset[ExecutionStatus] = frozenset(
    {ExecutionStatus.SUCCESS, ExecutionStatus.FAILED, ExecutionStatus.TERMINATED, ExecutionStatus.ABORTED})
WAITING_EXECUTION: frozenset[ExecutionStatus] = frozenset({ExecutionStatus.PENDING, ExecutionStatus.RERUN})


class Outcome(_Vocabulary):
    """How an attempt ended, as its attempt record keeps it. An instance reports all but aborted."""

    SUCCESS = "success"
    FAILED = "failed"
    TERMINATED = "terminated"
    ABORTED = "aborted"
    RESET = "reset"  # the platform lost or stopped the attempt


class ModelStatus(_Vocabulary):
    CREATED = "created"  # no trained weights yet
    PRE_TRAINED = "pre-trained"  # imported weights, never trained here: a base to fine-tune from
    PENDING = "pending"  # a training is queued
    TRAINING = "training"
    TRAINED = "trained"
    FAILED = "failed"


class InstanceStatus(_Vocabulary):
    INITIALIZING = "initializing"
    RUNNING = "running"
    FULL = "full"  # every slot busy
    PAUSED = "paused"
    TERMINATING = "terminating"  # draining
    EXITED = "exited"
    LOST = "lost"  # heartbeats stopped
    FAILED = "failed"  # crashed by itself


LIVE_INSTANCE: frozenset[InstanceStatus] = frozenset(
    {InstanceStatus.INITIALIZING, InstanceStatus.RUNNING, InstanceStatus.FULL, InstanceStatus.PAUSED, InstanceStatus.TERMINATING})
ENDED_INSTANCE: frozenset[InstanceStatus] = frozenset({InstanceStatus.EXITED, InstanceStatus.LOST, InstanceStatus.FAILED})
