"""The shape of the source tree: one import namespace, floors without arrows back up, no import
circles, no imports hidden inside functions, and files and functions of a readable size."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
TOP = ("services", "adapters", "functions", "scheduler", "deploy")
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 60

# Who may import whom, bottom up. A module's floor is the longest prefix of its name listed here.
FLOORS: dict[str, set[str]] = {
    "trainfaas.services.core": set(),
    "trainfaas.adapters": {"trainfaas.services.core"},
    "trainfaas.services.sdk": {"trainfaas.services.core"},
    "trainfaas.services.store": {"trainfaas.services.core"},
    "trainfaas.services.control": {"trainfaas.services.core", "trainfaas.adapters", "trainfaas.services.store"},
    "trainfaas.services.api": {"trainfaas.services.core", "trainfaas.adapters", "trainfaas.services.store",
                               "trainfaas.services.control", "trainfaas.services.ui"},
    "trainfaas.services.ui": {"trainfaas.services.core", "trainfaas.adapters", "trainfaas.services.store",
                              "trainfaas.services.control", "trainfaas.services.api"},
    "trainfaas.functions": {"trainfaas.services.core", "trainfaas.adapters"},
    "trainfaas.services.worker": {"trainfaas.services.core", "trainfaas.services.sdk", "trainfaas.services.store.queues",
                                  "trainfaas.functions"},
    "trainfaas.scheduler": {"trainfaas.services.core", "trainfaas.adapters", "trainfaas.services.store",
                            "trainfaas.services.control"},
    "trainfaas.services.local": {"trainfaas.services.core", "trainfaas.adapters", "trainfaas.services.store",
                                 "trainfaas.services.control", "trainfaas.services.api", "trainfaas.services.sdk",
                                 "trainfaas.scheduler"},
    "trainfaas.services.cli": {"trainfaas.services.core", "trainfaas.adapters", "trainfaas.services.sdk",
                               "trainfaas.services.local", "trainfaas.services.worker", "trainfaas.scheduler",
                               "trainfaas.services.store", "trainfaas.services.control"},
    "trainfaas.deploy": {"trainfaas.services.core"},
    "trainfaas.services": set(),  # the package itself: its __init__ imports nothing
}


def source_files(*tops: str) -> Iterator[Path]:
    for top in tops:
        yield from sorted(p for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["trainfaas", *parts])


def floor_of(module: str) -> str:
    return max((floor for floor in FLOORS if module == floor or module.startswith(floor + ".")), key=len)


def trainfaas_imports(tree: ast.AST, package: str) -> Iterator[tuple[ast.stmt, str, bool]]:
    """(node, imported module, at module level?) for every import of a trainfaas module."""
    def walk(node: ast.AST, top: bool) -> Iterator[tuple[ast.stmt, str, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # for annotations only, never executed
            inside = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                yield from ((child, alias.name, top) for alias in child.names if alias.name.startswith("trainfaas"))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] + ([base] if base else []))
                if base.startswith("trainfaas"):
                    for alias in child.names:
                        yield child, f"{base}.{alias.name}" if is_module(f"{base}.{alias.name}") else base, top
            yield from walk(child, inside)
    yield from walk(tree, True)


def is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (ROOT / relative).with_suffix(".py").is_file() or (ROOT / relative / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in source_files(*TOP):
        module = module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        edges[module] = {target for _, target, top in trainfaas_imports(tree, package) if top}
    return edges


def test_the_distribution_lists_every_package_folder() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {module_name(path.parent / "__init__.py") for path in source_files(*TOP) if path.name == "__init__.py"}
    assert listed == found


def test_no_source_file_or_function_is_too_long() -> None:
    too_long = []
    for path in source_files(*TOP, "tests"):
        text = path.read_text()
        if text.count("\n") > MAX_FILE_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, "\n".join(too_long)


def test_imports_only_go_down_a_floor_and_never_hide_in_functions() -> None:
    wrong = []
    for path in source_files(*TOP):
        module = module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        floor = floor_of(module)
        for node, target, top in trainfaas_imports(ast.parse(path.read_text()), package):
            where = f"{path.relative_to(ROOT)}:{node.lineno} imports {target}"
            if not top:
                wrong.append(f"{where} inside a function")
            elif floor_of(target) != floor and not any(target == ok or target.startswith(ok + ".") for ok in FLOORS[floor]):
                wrong.append(f"{where}, above or beside the floor of {floor}")
    assert not wrong, "\n".join(wrong)


def test_there_are_no_import_circles() -> None:
    edges = graph()
    modules = {name: {target if target in edges else target.rpartition(".")[0] for target in targets} for name, targets in edges.items()}
    state: dict[str, int] = {}
    circles = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(modules.get(module, ())):
            if state.get(target) == 1:
                circles.append(" -> ".join([*trail[trail.index(target):], target]) if target in trail else f"{module} -> {target}")
            elif target in modules and target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(modules):
        if module not in state:
            visit(module, [module])
    assert not circles, "\n".join(circles)


@pytest.mark.skipif(os.environ.get("TRAINFAAS_SKIP_WHEEL") == "1", reason="TRAINFAAS_SKIP_WHEEL=1")
def test_the_wheel_installs_one_import_name(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(ROOT)], check=True,
                   capture_output=True)
    (wheel,) = tmp_path.glob("trainfaas-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        record = next(name for name in archive.namelist() if name.endswith(".dist-info/RECORD"))
        paths = [line.split(",")[0] for line in archive.read(record).decode().splitlines() if line]
    assert {path.split("/")[0] for path in paths} == {"trainfaas", record.split("/")[0]}
    assert {path.split("/")[1] for path in paths if path.startswith("trainfaas/")} == set(TOP)

    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=True)
    python = fresh / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True)
    # The dependencies come from this environment's site-packages, but not its editable trainfaas.
    site = next((fresh / "lib").glob("python3*/site-packages"))
    (site / "dependencies.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    outside = {"cwd": tmp_path, "env": env, "capture_output": True, "text": True}
    assert subprocess.run([python, "-c", "import services"], **outside).returncode != 0  # type: ignore[call-overload]
    located = subprocess.run([python, "-c", "import trainfaas.services.cli.main as m; print(m.__file__)"], **outside)  # type: ignore[call-overload]
    assert located.returncode == 0, located.stderr
    assert located.stdout.startswith(str(site)), located.stdout
    helped = subprocess.run([fresh / "bin" / "trainfaas", "--help"], **outside)  # type: ignore[call-overload]
    assert helped.returncode == 0 and "Usage: trainfaas" in helped.stdout, helped.stderr
