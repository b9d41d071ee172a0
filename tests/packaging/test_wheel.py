"""The wheel (what a non-editable ``pip install`` and the container image install) is complete:
every module, every config of the top-level configs/ folder (as robustai/configs/), and the
configs are found and compose when robustai runs from the installed files."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(os.path.abspath(__file__)).parent.parent.parent
# What the wheel is built from (pyproject.toml names README.md as the long description).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "robustai", "configs")
PIP_WHEEL = (
    *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
    *("--disable-pip-version-check", "--no-cache-dir"),
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the sources, so the checkout gets no build/ or egg-info from it."""
    if importlib.util.find_spec("setuptools") is None:
        reason = "setuptools is not installed, so the wheel cannot be built without a download"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(
                REPO_ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(REPO_ROOT / name, src / name)
    proc = subprocess.run(
        [*PIP_WHEEL, "--wheel-dir", str(tmp / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (built,) = (tmp / "dist").glob("robustai-*.whl")
    return built


def names_in(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def repo_files(folder: str, pattern: str) -> list[str]:
    root = REPO_ROOT / folder
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(pattern))


def test_wheel_holds_every_config(wheel: Path) -> None:
    configs = repo_files("configs", "*.yaml")
    assert "train.yaml" in configs and "evaluate.yaml" in configs
    missing = [c for c in configs if f"robustai/configs/{c}" not in names_in(wheel)]
    assert not missing, f"configs/ files missing from {wheel.name}: {missing}"


def test_wheel_holds_every_module_and_nothing_outside_robustai(wheel: Path) -> None:
    names = names_in(wheel)
    modules = repo_files("robustai", "*.py")
    missing = [m for m in modules if f"robustai/{m}" not in names]
    assert not missing, f"modules missing from {wheel.name} (list the package in pyproject.toml)"
    assert "robustai/py.typed" in names
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top == {"robustai"}  # e.g. no top-level configs/ package in site-packages
    assert any(
        n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names
    )  # the Apache-2.0 text travels with the package
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as zf:
        assert "robustai = robustai.cli.main:main" in zf.read(entry_points).decode()


def test_installed_files_find_their_configs(wheel: Path, tmp_path: Path) -> None:
    """Unpacked like pip installs it (outside any checkout), robustai finds the configs shipped
    inside the package and Hydra composes them."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONWARNINGS": "ignore"}
    env.pop("ROBUSTAI_CONFIG_DIR", None)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import robustai; from robustai.cli.common import config_dir; "
            "print(robustai.__file__); print(config_dir())",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    module, configs = probe.stdout.split()
    assert Path(module).is_relative_to(site)  # not the checkout's robustai
    assert Path(configs) == site / "robustai" / "configs"
    proc = subprocess.run(
        [sys.executable, "-m", "robustai", "train", "--cfg", "job", "attack=pgd"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "name: pgd" in proc.stdout
    assert list(work.iterdir()) == []  # --cfg job writes nothing
