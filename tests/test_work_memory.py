"""A work process keeps the memory it frees for its next allocations: what a training step frees,
the next one reuses, instead of faulting fresh zeroed pages in again. Counted in minor page faults
(the kernel's count, not a clock), on glibc's malloc, which the setting is for."""
from __future__ import annotations

import contextlib
import ctypes
import json
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any

import psutil
import pytest

from trainfaas.functions.run import run_attempt
from trainfaas.services.core.processes import KEEP_FREED_MEMORY
from trainfaas.services.core.protocol import Result, WorkSpec, decode_work_message

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the setting is glibc's malloc; elsewhere it changes nothing")

BLOCKS, BLOCK = 64, 1024 * 1024  # a step's worth of 1 MB blocks, all freed at its end, as a training step frees its activations
PAGES = BLOCKS * BLOCK // resource.getpagesize()


def faults_of_steps(steps: int = 3) -> int:
    """Minor page faults of ``steps`` rounds of BLOCKS blocks malloc'ed, written and freed (the last
    first, so that each one joins the free top of the heap), after a first round."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    def step() -> None:
        blocks = [libc.malloc(BLOCK) for _ in range(BLOCKS)]
        for block in blocks:
            ctypes.memset(block, 1, BLOCK)
        for block in reversed(blocks):
            libc.free(block)

    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def resident_bytes() -> int:
    return int(psutil.Process().memory_info().rss)


PROGRAM = """
import json, sys
from trainfaas.services.core.processes import keep_freed_memory, release_freed_memory
from tests.test_work_memory import faults_of_steps, resident_bytes
took = keep_freed_memory() if sys.argv[1] == "keep" else None
faults = faults_of_steps()
held = resident_bytes()
release_freed_memory()
print(json.dumps({"took": took, "faults": faults, "held": held, "released": resident_bytes()}))
"""


def run_program(mode: str, **environment: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True,
                          env={**os.environ, **environment})
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_kept_memory_is_reused_without_page_faults_and_handed_back_on_release() -> None:
    default, kept = run_program("default"), run_program("keep")

    assert default["faults"] >= 3 * PAGES * 0.9, default  # glibc's defaults: every step faulted its pages in again
    assert kept["took"] is True and kept["faults"] < PAGES * 0.05, kept  # the first step's pages, reused
    assert kept["held"] - kept["released"] >= BLOCKS * BLOCK * 0.9, kept  # freed and kept, then handed back


def test_the_setting_can_be_turned_off() -> None:
    off = run_program("keep", **{KEEP_FREED_MEMORY: "0"})

    assert off["took"] is False and off["faults"] >= 3 * PAGES * 0.9, off


def measure_after_an_attempt(conn: Connection, report: Connection) -> None:
    spec = WorkSpec(execution_id="e", attempt=1, function="noop", input={}, output_path="/tmp")
    code = run_attempt(spec, conn, multiprocessing.get_context("fork").Event())
    report.send((code, faults_of_steps()))


def test_a_work_process_keeps_its_freed_memory_from_its_attempts_start() -> None:
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    report_ours, report_theirs = context.Pipe(duplex=False)
    process = context.Process(target=measure_after_an_attempt, args=(theirs, report_theirs))
    process.start()
    theirs.close()
    report_theirs.close()
    code, faults = report_ours.recv()
    process.join(30)
    sent = []
    with contextlib.suppress(EOFError):  # the pipe ends where the work process closed it
        while ours.poll():
            sent.append(decode_work_message(ours.recv_bytes()))

    assert code == 0 and isinstance(sent[-1], Result), sent
    assert faults < PAGES * 0.05, faults
