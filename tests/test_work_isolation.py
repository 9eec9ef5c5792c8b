"""Training code must not read the keys to the house: work processes run as the work user (an
instance that runs as root), the process backend hands the registration token through a pipe, not
the environment, and an instance reads only JSON of the protocol from its work processes."""
from __future__ import annotations

import json
import os
import pickle
import shlex
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, free_port
from tests.work_isolation_adapter import PICKLE_MARK
from trainfaas.functions.isolation import NOBODY, WorkUser, prepare_attempt, unreadable_by, work_user
from trainfaas.scheduler.backends.environment import REGISTRATION_TOKEN, REGISTRATION_TOKEN_FD, separate_token
from trainfaas.scheduler.backends.process import ProcessBackend, token_pipe
from trainfaas.services.control.tokens import swarm_registration_token
from trainfaas.services.core.protocol import ModelRef, WorkSpec
from trainfaas.services.core.settings import Settings, load_settings
from trainfaas.services.store.records import Instance, Service
from trainfaas.services.worker.exits import describe_exit
from trainfaas.services.worker.instance import read_token
from trainfaas.services.worker.work_process import PROTOCOL_ERROR, Running, Spare, work_process_context

ADAPTERS = "tests.work_isolation_adapter:KeysProbe"
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="only an instance that runs as root can run its work processes as another"
                                                       " user; CI runs as root, so this runs there")
# What the work user must not get at; a probe may fail for another reason (no such file) only where noted.
DENIED = ("admin-token", "instance-secret", "database", "logs", "home-listing", "redis", "instance-environ",
          "fork-server-environ", "write-home")


@pytest.fixture
def isolated_stack(short_tmp: Path) -> Iterator[Any]:
    """The real local stack on the process backend with the default work user, serving the probes."""
    from trainfaas.services.local.stack import Stack

    home, data = short_tmp / "home", short_tmp / "data"
    os.chmod(short_tmp, 0o711)  # the work user must pass through the directories above the home (docs/security.md)
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)  # a data root the work user reads
    blocked = unreadable_by(WorkUser("nobody", NOBODY, NOBODY), [data])
    if blocked:
        message = (f"the work user cannot read {'; '.join(blocked)}, so instances run work processes as root"
                   " (work_isolation auto); .ci/run makes the Python installation reachable")
        pytest.fail(f"{message} (CI=true)") if IN_CI else pytest.skip(message)
    settings = load_settings(home=home, database_url="", redis_url="", port=free_port(), api_url="", adapters=ADAPTERS,
                             data_roots=str(data), work_user="trainfaas-work", work_isolation="required")
    running = Stack(settings).start()
    settings.instance_secret_value()  # written on first use (swarm credentials): make it there to probe
    running.client = running.admin_client()
    try:
        yield running
    finally:
        running.stop(drain_timeout_s=5.0)


@AS_ROOT
@pytest.mark.stack
def test_training_code_cannot_read_the_keys_to_the_house(isolated_stack: Any) -> None:
    stack, client = isolated_stack, isolated_stack.client
    model = client.create_model("probe", "keys-probe")
    done = client.wait(client.train(model["id"])["id"], timeout_s=120)
    assert done["status"] == "success", (done.get("error"), done.get("traceback"), done["attempts"], client.logs(done["id"]))
    probes = done["output"]["metrics"]["probes"]

    who = json.loads(probes["who"]["content"])
    user = work_user("trainfaas-work")
    assert user is not None and (who["uid"], who["euid"], who["gid"], who["groups"]) == (user.uid, user.uid, user.gid, [])
    assert who["uid"] != 0 and who["home"].startswith(str(stack.settings.home / "executions"))
    for name in DENIED:
        assert probes[name]["denied"], f"the work process got {name}: {probes[name]}"
    assert not probes["own-output"]["denied"] and probes["own-output"]["content"] == "written"
    assert not probes["tmp"]["denied"]  # TMPDIR is its own
    assert not (stack.settings.home / "planted").exists()

    secret = stack.settings.instance_secret_value()
    keys = {stack.admin_token, secret, swarm_registration_token(secret, "mgmt-train-keys-probe"), stack.settings.redis_url}
    everything = json.dumps(probes) + "".join(line["line"] for line in client.logs(done["id"]))
    assert not [key for key in keys if key in everything]
    assert "TRAINFAAS_REGISTRATION_TOKEN" not in everything and "tfr_" not in everything

    # Nor is the registration token in the instance's own environment: it came through a pipe.
    instance = Instance.get(Instance.service == "mgmt-train-keys-probe")
    environ = Path(f"/proc/{instance.pid}/environ").read_bytes().decode(errors="replace") if Path(f"/proc/{instance.pid}").exists() else ""
    assert not [key for key in keys - {stack.settings.redis_url} if key in environ] and "tfr_" not in environ

    # What the instance handed over: the attempt's own directory, and a way through the ones above it.
    output = Path(done["output"]["model_path"]).parent
    assert (output.stat().st_uid, stat.S_IMODE(output.stat().st_mode)) == (user.uid, 0o700)
    for private in ("admin-token", "instance-secret", "trainfaas.db", "logs"):
        path = stack.settings.home / private
        assert path.stat().st_uid == 0 and not stat.S_IMODE(path.stat().st_mode) & 0o077, private
    assert not stat.S_IMODE(stack.settings.home.stat().st_mode) & 0o067  # search only, for the work user's group


def test_the_work_user_is_named_or_nobody_and_never_root_for_a_root_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert work_user("no-such-user-here") == WorkUser("no-such-user-here", NOBODY, NOBODY, exists=False)
    assert work_user("root") is None and work_user("") is None  # asked for: no isolation
    assert work_user("nobody") is not None and work_user("nobody").uid != 0
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert work_user("trainfaas-work") is None  # a non-root instance cannot change users


@AS_ROOT
def test_an_attempt_directory_is_the_work_users_and_nothing_beside_it(short_tmp: Path) -> None:
    home = short_tmp / "home"
    home.mkdir(mode=0o700)
    (home / "admin-token").write_text("secret")
    os.chmod(home / "admin-token", 0o600)
    user = WorkUser("nobody", NOBODY, NOBODY)
    output = home / "executions" / "e1" / "attempt-1"
    before = os.umask(0o077)  # as the stack runs
    try:
        prepare_attempt(output, home, user)
    finally:
        os.umask(before)
    assert (output.stat().st_uid, stat.S_IMODE(output.stat().st_mode)) == (NOBODY, 0o700)
    for directory in (home, home / "executions", home / "executions" / "e1"):
        st = directory.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, NOBODY, 0o710), directory
    assert (home / "admin-token").stat().st_uid == 0 and stat.S_IMODE((home / "admin-token").stat().st_mode) == 0o600


def test_the_token_goes_through_a_pipe_the_instance_reads_and_closes() -> None:
    fd = token_pipe("tfr_example")
    assert read_token(fd) == "tfr_example"
    with pytest.raises(OSError):
        os.fstat(fd)  # closed
    env, token = separate_token({REGISTRATION_TOKEN: "tfr_x", "TRAINFAAS_HOME": "/h"})
    assert (env, token) == ({"TRAINFAAS_HOME": "/h"}, "tfr_x")


def test_the_process_backend_hands_the_token_by_descriptor_and_not_in_the_environment(database_url: str, short_tmp: Path) -> None:
    report = short_tmp / "report.json"
    script = ("import json, os, sys; fd = int(os.environ['TRAINFAAS_REGISTRATION_TOKEN_FD']); "
              f"token = os.read(fd, 4096).decode(); json.dump({{'token': token, 'env': dict(os.environ)}}, open({str(report)!r}, 'w'))")
    settings = load_settings(home=short_tmp, database_url=database_url, process_command=shlex.join([sys.executable, "-c", script]))
    service = Service.create(name="mgmt-train-sleep", architecture="sleep")
    instance = Instance.create(service=service)
    backend = ProcessBackend(settings)
    expected = "tfr_" + "7" * 64  # the one-time token the scheduler drew for this instance
    backend.start(service, instance, expected)
    backend.children[instance.id].wait(timeout=30)
    seen = json.loads(report.read_text())
    assert seen["token"] == expected
    assert REGISTRATION_TOKEN not in seen["env"] and REGISTRATION_TOKEN_FD in seen["env"]
    assert not [name for name, value in seen["env"].items() if expected in value]


def _spec(output: Path, architecture: str) -> WorkSpec:
    return WorkSpec(execution_id="e1", attempt=1, function="train_model", output_path=str(output),
                    model=ModelRef(id="m1", architecture=architecture), adapters=ADAPTERS)


def test_an_instance_never_unpickles_what_a_work_process_sends(tmp_path: Path) -> None:
    output = tmp_path / "attempt-1"
    output.mkdir()
    spare = Spare.start(work_process_context(), "pickle-bomb", ADAPTERS, name="work-test")
    run = Running.hand(spare, _spec(output, "pickle-bomb"), timeout_s=60, drain_time_s=1, oom_kills_before=0)
    deadline = time.monotonic() + 60
    while run.process.is_alive() and time.monotonic() < deadline:
        run.receive()
        time.sleep(0.05)
    run.process.join(5)
    run.receive()
    assert not (output / PICKLE_MARK).exists(), "the instance ran code a work process sent"
    assert run.result is None and run.error is not None and run.error.error == PROTOCOL_ERROR
    outcome, reason = describe_exit(run, run.process.exitcode)
    assert outcome == "failed" and "not a message of the protocol" in reason and "JSON" in reason, reason
    # The same bytes, unpickled, would have written the file: the test tells a real attack.
    pickle.loads(_bomb_bytes(output))
    assert (output / PICKLE_MARK).exists()


def _bomb_bytes(output: Path) -> bytes:
    class Bomb:
        def __reduce__(self) -> Any:
            return (Path.write_text, (output / PICKLE_MARK, "ran"))

    return pickle.dumps(Bomb())


def test_settings_name_the_work_user_and_the_token_descriptor() -> None:
    fields = Settings.model_fields
    assert fields["work_user"].default == "trainfaas-work" and fields["registration_token_fd"].default is None


def test_a_container_mounts_its_executions_and_data_roots_but_never_the_home(short_tmp: Path) -> None:
    from trainfaas.scheduler.backends.containers import instance_mounts

    home, outside = short_tmp / "home", short_tmp / "data"
    (home / "datasets").mkdir(parents=True)
    outside.mkdir()
    settings = load_settings(home=home, database_url="", redis_url="", data_roots=f"{home}:{outside}:{short_tmp / 'missing'}")
    mounts = {m["Target"]: m for m in instance_mounts(settings)}
    assert mounts[str(home / "executions")]["ReadOnly"] is False and (home / "executions").is_dir()
    assert mounts[str(home / "datasets")]["ReadOnly"] is True and mounts[str(outside)]["ReadOnly"] is True
    assert mounts[str(home / "redis.sock")]["Source"] == str(home / "redis.sock")
    assert str(home) not in mounts and str(short_tmp / "missing") not in mounts

    # A data root that holds the home: mounted read-only, with the home covered by an empty tmpfs.
    covering = load_settings(home=home, database_url="", redis_url="redis://127.0.0.1:6379/0", data_roots=str(short_tmp))
    mounts = {m["Target"]: m for m in instance_mounts(covering)}
    assert mounts[str(short_tmp)]["ReadOnly"] is True and mounts[str(home)]["Type"] == "tmpfs"
    assert mounts[str(home / "executions")]["ReadOnly"] is False and str(home / "redis.sock") not in mounts


@AS_ROOT
def test_a_data_set_the_work_user_cannot_read_fails_the_attempt_saying_so(short_tmp: Path) -> None:
    import contextlib
    import multiprocessing

    from trainfaas.functions.run import standby
    from trainfaas.services.core.protocol import Failure, decode_work_message

    os.chmod(short_tmp, 0o711)
    private = short_tmp / "private"
    (private / "set").mkdir(parents=True)
    os.chmod(private, 0o700)  # a data root of mode 0700 root
    user = WorkUser("nobody", NOBODY, NOBODY)
    output = short_tmp / "home" / "executions" / "e1" / "attempt-1"
    prepare_attempt(output, short_tmp / "home", user)
    spec = WorkSpec(execution_id="e1", attempt=1, function="noop", output_path=str(output), data_path=str(private / "set"))
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    process = context.Process(target=standby, args=(theirs, context.Event(), None, "", user))
    process.start()
    theirs.close()
    ours.send_bytes(spec.model_dump_json().encode())
    process.join(30)
    sent = []
    with contextlib.suppress(EOFError):
        while ours.poll():
            sent.append(decode_work_message(ours.recv_bytes()))
    assert process.exitcode == 1 and isinstance(sent[-1], Failure) and sent[-1].error == "PermissionError", sent
    assert "cannot read the data set" in sent[-1].message and f"{private} is mode 0700" in sent[-1].message, sent[-1].message


@AS_ROOT
def test_a_work_user_that_cannot_read_what_work_needs_is_not_used_unless_required(short_tmp: Path, caplog: pytest.LogCaptureFixture) -> None:
    from trainfaas.services.core.errors import ConfigError
    from trainfaas.services.worker.instance import InstanceProcess

    private = short_tmp / "private"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)  # a data root only root reads
    instance = object.__new__(InstanceProcess)
    instance.settings = load_settings(home=short_tmp / "home", data_roots=str(private), work_user="trainfaas-work")
    instance.work_user = work_user("trainfaas-work")
    with caplog.at_level("WARNING"):
        instance._tell_work_user()
    assert instance.work_user is None
    assert f"cannot read {private}" in caplog.text and "TRAINFAAS_WORK_ISOLATION=required" in caplog.text

    instance.settings = load_settings(home=short_tmp / "home", data_roots=str(private), work_isolation="required")
    instance.work_user = work_user("trainfaas-work")
    with pytest.raises(ConfigError, match=f"cannot read {private}"):
        instance._tell_work_user()
