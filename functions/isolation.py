"""The work user: who a work process runs as, and what it may touch.

An instance that runs as root runs its work processes as an unprivileged user (the
``TRAINFAAS_WORK_USER`` setting, default ``trainfaas-work``; uid and gid 65534, the customary
``nobody``, where no such user exists). The work process drops to it before it imports or runs any
adapter code (:func:`drop_privileges`: ``setgroups([])``, ``setgid``, ``setuid``, in that order,
then not dumpable and no new privileges). The instance, still root, hands the attempt's own output
directory to that user and lets it through the directories above it up to the home, and nothing
else (:func:`prepare_attempt`): the admin token, the instance secret, the database, the logs and the
Redis socket stay root's, mode 0600/0700, and the work process gets EACCES on them.

An instance that does not run as root cannot change users: its work processes run as its own user
and can read what it can (see docs/security.md#work-processes).
"""
from __future__ import annotations

import ctypes
import os
import pwd
import site
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534  # the uid and gid of the work user where the named user does not exist
NO_DROP = ("", "root", "0")  # TRAINFAAS_WORK_USER values that keep work processes as the instance's user
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
WORK_DIR = ".work"  # inside the attempt's output directory: the work user's HOME and TMPDIR


@dataclass(frozen=True)
class WorkUser:
    """The user and group a work process drops to."""

    name: str
    uid: int
    gid: int
    exists: bool = True  # False: no user of that name, so the fixed uid/gid 65534

    @property
    def label(self) -> str:
        return f"{self.name} ({'' if self.exists else 'no such user: '}uid {self.uid}, gid {self.gid})"


def work_user(name: str) -> WorkUser | None:
    """The user work processes run as under the setting ``name``: None when the instance is not root
    (it cannot change users) or ``name`` asks to stay root; the named user, else uid/gid 65534."""
    if os.geteuid() != 0 or name.strip() in NO_DROP:
        return None
    try:
        entry = pwd.getpwnam(name.strip())
    except KeyError:
        if name.strip().isdigit():
            return WorkUser(name.strip(), int(name), int(name))
        return WorkUser(name.strip(), NOBODY, NOBODY, exists=False)
    if entry.pw_uid == 0:
        return None
    return WorkUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _prctl(option: int, value: int) -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(option, value, 0, 0, 0)
    except OSError:
        pass


def not_dumpable() -> None:
    """No core dumps, and no ptrace or /proc/<pid>/environ, mem, maps of this process by another
    process of the same (non-root) user."""
    _prctl(PR_SET_DUMPABLE, 0)


def drop_privileges(user: WorkUser | None) -> None:
    """Become ``user`` for good (supplementary groups, gid, uid, in that order); then neither
    dumpable nor able to gain privileges again through exec. Raises PermissionError if the change
    did not hold."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    if user is None:
        return
    os.setgroups([])
    os.setgid(user.gid)
    os.setuid(user.uid)
    if os.getuid() != user.uid or os.geteuid() != user.uid or os.getegid() != user.gid or os.getgroups():
        raise PermissionError(f"could not become the work user {user.label}")
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise PermissionError("the work process could become root again after dropping privileges")
    not_dumpable()


SEARCH = (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)  # the mode bits that let owner, group, others pass
READ = (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)


def _allows(st: os.stat_result, user: WorkUser, bits: tuple[int, int, int]) -> bool:
    """Whether ``st``'s mode gives ``user`` the owner's, the group's or the others' bit of ``bits``, as the kernel picks."""
    owner, group, others = bits
    if st.st_uid == user.uid:
        return bool(st.st_mode & owner)
    if st.st_gid == user.gid:
        return bool(st.st_mode & group)
    return bool(st.st_mode & others)


def let_through(directory: Path, user: WorkUser) -> None:
    """Let ``user`` pass through ``directory`` (search, not list): its group becomes the work
    user's with g+x where no group uses it yet, else o+x."""
    st = directory.stat()
    if _allows(st, user, SEARCH):
        return
    if st.st_mode & 0o070 == 0 or st.st_gid == user.gid:
        os.chown(directory, -1, user.gid)
        os.chmod(directory, stat.S_IMODE(st.st_mode) | stat.S_IXGRP)
    else:
        os.chmod(directory, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def prepare_attempt(output: Path, home: Path, user: WorkUser | None) -> None:
    """Make the attempt's output directory (and its work directory) ``user``'s, mode 0700, and let
    the user through the directories between it and ``home`` (both included). Nothing else changes
    owner or mode; directories above ``home`` are the operator's (see :func:`unreachable`)."""
    output.mkdir(parents=True, exist_ok=True)
    if user is None:
        return
    for directory in (output, output / WORK_DIR, output / WORK_DIR / "tmp"):
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chown(directory, user.uid, user.gid)
        os.chmod(directory, 0o700)
    home = home.resolve()
    parent = output.resolve().parent
    while parent != home and home in parent.parents:
        let_through(parent, user)
        parent = parent.parent
    if parent == home:
        let_through(home, user)


def unreachable(path: Path, write: bool = False) -> str | None:
    """Why the current user cannot read (or ``write``) ``path``: the first directory on the way it
    may not pass, or the path itself; None when it can."""
    path = Path(path)
    for parent in reversed(path.parents):
        if parent.exists() and not os.access(parent, os.X_OK):
            return f"{parent} is mode {stat.S_IMODE(os.stat(parent).st_mode):04o}, owned by uid {os.stat(parent).st_uid}"
    if not path.exists():
        return None  # missing, not forbidden: the function says so itself
    wanted = os.R_OK | (os.W_OK if write else 0) | (os.X_OK if path.is_dir() else 0)
    if not os.access(path, wanted):
        st = path.stat()
        return f"{path} is mode {stat.S_IMODE(st.st_mode):04o}, owned by uid {st.st_uid}"
    return None


def work_environment(output: Path) -> None:
    """HOME, TMPDIR and the caches of the deep learning libraries inside the attempt's work
    directory: the instance's HOME (/root) is not the work user's. Set caches stay as they are
    (they must then be readable by the work user)."""
    work = output / WORK_DIR
    os.environ["HOME"] = str(work)
    os.environ["TMPDIR"] = str(work / "tmp")
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    for name, default in (("XDG_CACHE_HOME", work / ".cache"), ("XDG_CONFIG_HOME", work / ".config"),
                          ("MPLCONFIGDIR", work / ".config" / "matplotlib"), ("YOLO_CONFIG_DIR", work / ".config" / "Ultralytics")):
        os.environ.setdefault(name, str(default))


def unreadable_by(user: WorkUser, data_roots: Iterable[Path] = ()) -> list[str]:
    """What a work process needs once it became ``user`` that ``user`` cannot read, each with the
    directory that stops it, judged from the modes: the standard library, the installed packages,
    trainfaas, and the data roots."""
    needed = {Path(os.__file__).parent, Path(__file__).resolve().parent.parent, *map(Path, site.getsitepackages()), *data_roots}
    found = []
    for path in sorted(p for p in needed if p.exists()):
        for directory in [*reversed(path.parents), path]:
            st = directory.stat()
            if not _allows(st, user, SEARCH) or (directory == path and not _allows(st, user, READ)):
                found.append(f"{path} ({directory} is mode {stat.S_IMODE(st.st_mode):04o}, uid {st.st_uid})")
                break
    return found
