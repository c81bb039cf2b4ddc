"""The Python distributions: the client wheel holds only the client, the protos wheel holds every generated
stub, and the two import as one `crossmodal` package, both as wheels and as the separate source trees of
editable installs. Everything is built and installed offline from what this virtualenv already has."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
PROTOS_PACKAGE = PROTOS / "python"
CLIENT_PACKAGE = ROOT / "clients" / "python"
# setuptools writes these into the project it builds; a stale build/lib would leak old files into a wheel.
BUILD_OUTPUTS = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__")
STUB_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi")
# What a program using the client imports, and the distribution each module must come from.
IMPORTS = {
    "crossmodal.client": "client",
    "crossmodal.v1.crossmodal_pb2": "protos",
    "crossmodal.v1.crossmodal_pb2_grpc": "protos",
    "crossmodal.v1.model_config_pb2": "protos",
    "inference.grpc_service_pb2": "protos",
}
IMPORT_CHECK = (
    "import importlib, json, sys\n"
    f"names = {sorted(IMPORTS)!r}\n"
    "print(json.dumps({name: importlib.import_module(name).__file__ for name in names}))\n"
)


def proto_stubs() -> set[str]:
    """The files `make proto` generates for every .proto under protos/, as paths inside a wheel."""
    protos = [path for path in PROTOS.rglob("*.proto") if PROTOS_PACKAGE not in path.parents]
    assert protos, f"no .proto files under {PROTOS}"
    stems = [path.relative_to(PROTOS).with_suffix("").as_posix() for path in protos]
    return {stem + suffix for stem in stems for suffix in STUB_SUFFIXES}


def build_wheel(project: Path, workdir: Path) -> Path:
    """A wheel of a copy of `project`: the build neither writes into the tree nor reuses its outputs."""
    source = workdir / project.relative_to(ROOT).as_posix().replace("/", "-")
    shutil.copytree(project, source, ignore=BUILD_OUTPUTS)
    out = workdir / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", str(out), str(source)],
        check=True,
    )  # fmt: skip
    name = tomllib.loads((project / "pyproject.toml").read_text())["project"]["name"].replace("-", "_")
    (wheel,) = out.glob(f"{name}-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    missing = sorted(stub for stub in proto_stubs() if not (PROTOS_PACKAGE / "src" / stub).exists())
    assert not missing, f"run `make proto` first: {missing} are not generated"
    workdir = tmp_path_factory.mktemp("packaging")
    return {"client": build_wheel(CLIENT_PACKAGE, workdir), "protos": build_wheel(PROTOS_PACKAGE, workdir)}


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name for name in archive.namelist() if ".dist-info/" not in name}


def wheel_metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        return archive.read(metadata).decode()


def fresh_venv(path: Path, search_paths: list[Path]) -> tuple[Path, Path]:
    """A virtualenv without pip whose site-packages also searches `search_paths` (a .pth file): the
    libraries the client needs come from this virtualenv, and nothing of crossmodal does, because a path
    listed in a .pth is not a site directory whose own .pth files (this virtualenv's editable installs)
    would be read."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    site_packages = Path(purelib)
    (site_packages / "search_paths.pth").write_text("".join(f"{entry}\n" for entry in search_paths))
    return python, site_packages


def imported_files(python: Path, cwd: Path) -> dict[str, Path]:
    """Where each module of IMPORTS comes from, in an isolated interpreter (no PYTHONPATH, no working dir)."""
    result = subprocess.run(
        [str(python), "-I", "-c", IMPORT_CHECK], cwd=cwd, check=True, capture_output=True, text=True
    )
    return {name: Path(file) for name, file in json.loads(result.stdout).items()}


def libraries() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def test_client_wheel_holds_only_the_client(wheels: dict[str, Path]) -> None:
    files = wheel_files(wheels["client"])
    assert "crossmodal/__init__.py" in files and "crossmodal/client.py" in files
    assert not [name for name in files if re.search(r"_pb2(_grpc)?\.pyi?$", name)]
    assert not [name for name in files if "model_config_pb2" in name]
    assert not [name for name in files if name.startswith(("inference/", "crossmodal/v1/"))]
    assert re.search(r"^Requires-Dist: crossmodal-protos\b", wheel_metadata(wheels["client"]), re.MULTILINE)


def test_protos_wheel_holds_every_stub_and_nothing_else(wheels: dict[str, Path]) -> None:
    files = wheel_files(wheels["protos"])
    packages = {"crossmodal/v1/__init__.py", "inference/__init__.py"}
    assert files == proto_stubs() | packages
    # crossmodal/__init__.py is the client's: two distributions must not install the same file.
    assert "crossmodal/__init__.py" not in files


def test_protos_requirements_are_what_the_generated_code_checks(wheels: dict[str, Path]) -> None:
    with zipfile.ZipFile(wheels["protos"]) as archive:
        messages = archive.read("crossmodal/v1/crossmodal_pb2.py").decode()
        services = archive.read("crossmodal/v1/crossmodal_pb2_grpc.py").decode()
    protobuf = re.search(r"^# Protobuf Python Version: (\S+)$", messages, re.MULTILINE)
    grpcio = re.search(r"^GRPC_GENERATED_VERSION = '(\S+)'$", services, re.MULTILINE)
    assert protobuf and grpcio, "the generated code no longer names the versions it needs"
    requires = re.findall(r"^Requires-Dist: (.+)$", wheel_metadata(wheels["protos"]), re.MULTILINE)
    assert sorted(requires) == [f"grpcio>={grpcio[1]}", f"protobuf>={protobuf[1]}"]


def test_both_wheels_installed_into_a_fresh_venv_import_as_one_package(
    wheels: dict[str, Path], tmp_path: Path
) -> None:
    python, site_packages = fresh_venv(tmp_path / "venv", [libraries()])
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-index", "--no-deps",
         str(wheels["client"]), str(wheels["protos"])],
        check=True,
    )  # fmt: skip
    files = imported_files(python, tmp_path)
    installed = {name: site_packages in file.parents for name, file in files.items()}
    assert installed == dict.fromkeys(IMPORTS, True)
    cli = subprocess.run([str(python.parent / "crossmodal"), "--help"], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert "compare" in cli.stdout


@pytest.mark.parametrize("first", ["client", "protos"])
def test_separate_source_trees_import_as_one_package(first: str, tmp_path: Path) -> None:
    """The layout of the editable installs `make setup` makes: each distribution's src/ is its own sys.path
    entry, in either order."""
    trees = {"client": CLIENT_PACKAGE / "src", "protos": PROTOS_PACKAGE / "src"}
    order = sorted(trees, key=lambda name: name != first)
    python, _ = fresh_venv(tmp_path / "venv", [*(trees[name] for name in order), libraries()])
    files = imported_files(python, tmp_path)
    from_own_tree = {name: trees[IMPORTS[name]] in file.parents for name, file in files.items()}
    assert from_own_tree == dict.fromkeys(IMPORTS, True)
