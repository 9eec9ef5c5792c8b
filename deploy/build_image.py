"""Build the runner image, and local Redis and PostgreSQL images, without an image registry.

``make image`` runs this. Three steps, each skipped when its image exists and was built from the
same inputs (recorded in the label ``trainfaas.image.key``):

1. a Debian base image, ``trainfaas-base:bookworm``: ``debootstrap --variant=minbase`` from
   Debian's package mirror (python3, python3-venv, tini, ca-certificates), turned into an image
   with ``docker import``;
2. a wheelhouse on this machine (``build/wheelhouse``, ignored by git): ``pip wheel`` of the
   project's dependencies under deploy/constraints.txt, so the build downloads nothing;
3. ``deploy/Dockerfile.runner`` on that base, tagged ``trainfaas-runner:<version>`` and
   ``trainfaas-runner:latest`` (the default of ``TRAINFAAS_DOCKER_IMAGE``).

``--services`` also builds ``trainfaas-redis:bookworm`` and ``trainfaas-postgres:bookworm`` from
the same base with Debian's redis-server and postgresql packages, stand-ins for the official
images that deploy/compose.yaml and deploy/stack.yaml name by default.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGE = "trainfaas-base:bookworm"
LATEST = "trainfaas-runner:latest"  # the default of TRAINFAAS_DOCKER_IMAGE
REDIS_IMAGE = "trainfaas-redis:bookworm"
POSTGRES_IMAGE = "trainfaas-postgres:bookworm"
KEY_LABEL = "trainfaas.image.key"
MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "tini", "ca-certificates")
# What the runner image is made of: a change to any of these makes a new image.
SOURCE_FOLDERS = ("services", "functions", "adapters", "scheduler", "deploy")
SOURCE_FILES = ("pyproject.toml", "README.md", "deploy/constraints.txt", "deploy/Dockerfile.runner", ".dockerignore")
STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[make image {time.monotonic() - STARTED:6.0f} s] {message}", flush=True)


def version() -> str:
    found = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    return found.group(1) if found else "latest"


def runner_image() -> str:
    return f"trainfaas-runner:{version()}"


def digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(hashlib.sha256(part).digest())
    return hasher.hexdigest()[:16]


def base_key() -> str:
    return digest(MIRROR.encode(), SUITE.encode(), " ".join(BASE_PACKAGES).encode())


def source_paths() -> list[Path]:
    """The files the runner build copies (.dockerignore leaves out deploy/'s other files: the
    compose and stack files, guides and dashboards, which change nothing in the image)."""
    files = [ROOT / name for name in SOURCE_FILES]
    for folder in SOURCE_FOLDERS:
        files += [p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and (folder != "deploy" or p.suffix == ".py")]
    return sorted(set(files))


def runner_key(base_id: str) -> str:
    """The key of a runner image built now: the base image and every file the build copies."""
    parts = [base_id.encode()]
    for path in source_paths():
        parts += [str(path.relative_to(ROOT)).encode(), path.read_bytes() if path.exists() else b""]
    return digest(*parts)


def image_label(image: str) -> str | None:
    """The build key of a local image, or None when there is no such image."""
    found = subprocess.run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", image],
                           capture_output=True, text=True)
    if found.returncode != 0:
        return None
    return (json.loads(found.stdout) or {}).get(KEY_LABEL, "")


def image_id(image: str) -> str:
    return subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", image],
                          capture_output=True, text=True, check=True).stdout.strip()


def up_to_date_runner_image() -> str | None:
    """The runner image's name when it exists and was built from this checkout; else None."""
    image = runner_image()
    label = image_label(image)
    if label is None or image_label(BASE_IMAGE) is None:
        return None
    return image if label == runner_key(image_id(BASE_IMAGE)) else None


def run(command: list[str], **kwargs: object) -> None:
    say("$ " + " ".join(command))
    subprocess.run(command, check=True, **kwargs)  # type: ignore[call-overload]


def build_base() -> None:
    key = base_key()
    if image_label(BASE_IMAGE) == key:
        say(f"{BASE_IMAGE} is up to date")
        return
    if shutil.which("debootstrap") is None:
        sys.exit("debootstrap is missing: apt-get install -y debootstrap")
    with tempfile.TemporaryDirectory(prefix="trainfaas-rootfs-") as rootfs:
        say(f"debootstrap {SUITE} (minbase) from {MIRROR}: a few minutes")
        run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, rootfs, MIRROR],
            stdout=subprocess.DEVNULL)
        shutil.rmtree(Path(rootfs, "var/cache/apt/archives"), ignore_errors=True)
        Path(rootfs, "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        say(f"docker import {BASE_IMAGE}")
        tar = subprocess.Popen(["tar", "-C", rootfs, "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        run(["docker", "import", "--change", f"LABEL {KEY_LABEL}={key}", "--change", "CMD [\"/bin/bash\"]",
             "-", BASE_IMAGE], stdin=tar.stdout, stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            sys.exit("tar of the debootstrap root failed")


def build_wheelhouse() -> Path:
    """Wheels of every dependency (not of trainfaas itself: its sources change more often)."""
    wheelhouse = ROOT / "build" / "wheelhouse"
    wheelhouse.mkdir(parents=True, exist_ok=True)
    say(f"pip wheel into {wheelhouse.relative_to(ROOT)} (downloads only what is not there yet)")
    # pip resolves for this Python; the image's is Debian's 3.11.2, where redis also wants
    # async-timeout (below 3.11.3). The image's `pip check` fails the build if anything else is missing.
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheelhouse), "-c", "deploy/constraints.txt",
         ".[postgres]", "setuptools>=77", "pip", "async-timeout>=4.0.3"], cwd=ROOT)
    for own in wheelhouse.glob("trainfaas-*.whl"):
        own.unlink()
    return wheelhouse


def build_runner() -> str:
    image = runner_image()
    key = runner_key(image_id(BASE_IMAGE))
    if image_label(image) == key:
        say(f"{image} is up to date")
        run(["docker", "tag", image, LATEST])
        return image
    build_wheelhouse()
    say(f"docker build {image}: the first build installs torch and its CUDA libraries (minutes)")
    run(["docker", "build", "--network", "host", "-f", "deploy/Dockerfile.runner", "--build-arg", f"BASE={BASE_IMAGE}",
         "--label", f"{KEY_LABEL}={key}", "-t", image, "-t", LATEST, "."], cwd=ROOT)
    return image


def build_service(image: str, dockerfile: str) -> None:
    key = digest(image_id(BASE_IMAGE).encode(), (ROOT / dockerfile).read_bytes())
    if image_label(image) == key:
        say(f"{image} is up to date")
        return
    with tempfile.TemporaryDirectory() as context:  # nothing of the checkout goes into these
        shutil.copy(ROOT / dockerfile, Path(context, "Dockerfile"))
        run(["docker", "build", "--network", "host", "--build-arg", f"BASE={BASE_IMAGE}",
             "--label", f"{KEY_LABEL}={key}", "-t", image, context])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", action="store_true", help="also build the local Redis and PostgreSQL images")
    parser.add_argument("--services-only", action="store_true", help="build only the base, Redis and PostgreSQL images")
    parser.add_argument("--check", action="store_true", help="exit 0 when the runner image is up to date, 1 otherwise")
    args = parser.parse_args(argv)
    if args.check:
        sys.exit(0 if up_to_date_runner_image() else 1)
    build_base()
    if not args.services_only:
        say(f"built {build_runner()}")
    if args.services or args.services_only:
        build_service(REDIS_IMAGE, "deploy/Dockerfile.redis")
        build_service(POSTGRES_IMAGE, "deploy/Dockerfile.postgres")
        say(f"built {REDIS_IMAGE} and {POSTGRES_IMAGE}")
    say("done")


if __name__ == "__main__":
    main()
