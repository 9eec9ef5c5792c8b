"""Adapters for tests/test_work_isolation.py, registered through TRAINFAAS_ADAPTERS.

``keys-probe`` is training code that tries the keys to the house: it opens the admin token, the
instance secret and the database, connects to the embedded Redis, reads its instance's and its own
/proc/<pid>/environ, and reports what each try got. ``pickle-bomb`` sends its instance a pickle
whose unpickling would write a file.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from trainfaas.adapters import ModelAdapter, Options

PICKLE_MARK = "pickle-ran"  # the file the pickle's __reduce__ would create, in the attempt's output directory


def _parent(pid: int | str) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _try(read: Any) -> dict[str, Any]:
    try:
        got = read()
    except OSError as exc:
        return {"denied": isinstance(exc, PermissionError), "error": f"{type(exc).__name__}: {exc}"}
    text = got.decode(errors="replace") if isinstance(got, bytes) else str(got)
    return {"denied": False, "content": text[:20000]}


def _connect(path: Path) -> str:
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(path))
        client.sendall(b"PING\r\n")
        return client.recv(100).decode(errors="replace")


def probes(output_path: Path) -> dict[str, dict[str, Any]]:
    """What this process can get of the keys to the house; ``output_path`` is <home>/executions/<id>/attempt-<n>."""
    home = output_path.resolve().parents[2]
    fork_server = _parent("self")
    instance = _parent(fork_server)
    return {
        "admin-token": _try(lambda: (home / "admin-token").read_bytes()),
        "instance-secret": _try(lambda: (home / "instance-secret").read_bytes()),
        "database": _try(lambda: (home / "trainfaas.db").read_bytes()),
        "logs": _try(lambda: "\n".join(os.listdir(home / "logs"))),
        "home-listing": _try(lambda: "\n".join(os.listdir(home))),
        "redis": _try(lambda: _connect(home / "redis.sock")),
        "instance-environ": _try(lambda: Path(f"/proc/{instance}/environ").read_bytes()),
        "fork-server-environ": _try(lambda: Path(f"/proc/{fork_server}/environ").read_bytes()),
        "self-environ": _try(lambda: Path("/proc/self/environ").read_bytes()),
        "instance-cmdline": _try(lambda: Path(f"/proc/{instance}/cmdline").read_bytes()),
        "write-home": _try(lambda: (home / "planted").write_text("x")),
        "own-output": _try(lambda: (output_path / "mine.txt").write_text("written") and (output_path / "mine.txt").read_text()),
        "tmp": _try(lambda: __import__("tempfile").mkstemp()[1]),
        "who": {"denied": False, "content": json.dumps({"uid": os.getuid(), "gid": os.getgid(), "euid": os.geteuid(),
                                                        "groups": os.getgroups(), "home": os.environ.get("HOME", "")})},
    }


class ProbeOptions(Options):
    pass


class KeysProbe(ModelAdapter):
    architectures = ("keys-probe", "pickle-bomb")
    task = "diagnostic"
    dataset_format = None
    Options = ProbeOptions

    def train(self, data_path: Path | None, output_path: Path, **configuration: Any) -> dict[str, Any]:
        if self.architecture == "pickle-bomb":
            return self._bomb(output_path)
        found = probes(output_path)
        for name, probe in found.items():
            self.context.log(f"probe {name}: {json.dumps(probe)[:2000]}")
        return {"probes": found}

    def _bomb(self, output_path: Path) -> dict[str, Any]:
        mark = output_path / PICKLE_MARK

        class Bomb:
            def __reduce__(self) -> Any:
                return (Path.write_text, (mark, "the instance unpickled what a work process sent"))

        import pickle

        conn = self.context._conn  # what adapter code can reach: the pipe to its instance
        conn.send_bytes(pickle.dumps(Bomb()))
        self.context.progress(50.0, "sent a pickle")
        return {"sent": 1.0}

    def save(self, local_path: Path, **kwargs: Any) -> None:
        Path(local_path).mkdir(parents=True, exist_ok=True)
        (Path(local_path) / "model.json").write_text("{}")

    def load(self, local_path: Path, **kwargs: Any) -> None:
        pass

    def predict(self, batch: list[Any], **kwargs: Any) -> list[Any]:
        return [None for _ in batch]
