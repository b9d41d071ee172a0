"""Where the Hydra configs are found: $ROBUSTAI_CONFIG_DIR, the source checkout, the package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import robustai
from robustai.cli import common
from robustai.cli.common import ENV_CONFIG_DIR, config_dir
from robustai.errors import ConfigError

REPO_ROOT = Path(os.path.abspath(__file__)).parent.parent.parent


def configs_at(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "train.yaml").write_text("defaults: []\n")
    return folder


def test_source_checkout_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_CONFIG_DIR, raising=False)
    assert config_dir() == (REPO_ROOT / "configs").resolve()


def test_env_var_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = configs_at(tmp_path / "mine")
    monkeypatch.setattr(common, "_installed_configs", lambda: configs_at(tmp_path / "installed"))
    monkeypatch.setenv(ENV_CONFIG_DIR, str(mine))
    assert config_dir() == mine.resolve()


def test_env_var_without_train_yaml_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_CONFIG_DIR, str(tmp_path))  # exists, but holds no train.yaml
    with pytest.raises(ConfigError) as exc:
        config_dir()
    assert "\n" not in str(exc.value)
    assert f"{ENV_CONFIG_DIR}={tmp_path} holds no train.yaml" in str(exc.value)


def test_env_var_without_the_apps_config_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`robustai evaluate` needs evaluate.yaml there, not only train.yaml."""
    monkeypatch.setenv(ENV_CONFIG_DIR, str(configs_at(tmp_path / "mine")))
    assert config_dir("train") == (tmp_path / "mine").resolve()
    with pytest.raises(ConfigError, match=r"holds no evaluate\.yaml"):
        config_dir("evaluate")


def test_source_checkout_comes_before_the_installed_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An editable install reads the checkout's configs/, so that edits there take effect."""
    monkeypatch.delenv(ENV_CONFIG_DIR, raising=False)
    monkeypatch.setattr(common, "_installed_configs", lambda: configs_at(tmp_path / "installed"))
    assert config_dir() == (REPO_ROOT / "configs").resolve()


def test_installed_copy_without_a_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_CONFIG_DIR, raising=False)
    installed = configs_at(tmp_path / "installed")
    monkeypatch.setattr(common, "_source_tree_configs", lambda: None)
    monkeypatch.setattr(common, "_installed_configs", lambda: installed)
    assert config_dir() == installed


def test_nothing_found_is_one_line_naming_the_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_CONFIG_DIR, raising=False)
    monkeypatch.setattr(common, "_source_tree_configs", lambda: tmp_path / "no-train-yaml")
    monkeypatch.setattr(common, "_installed_configs", lambda: None)
    with pytest.raises(ConfigError) as exc:
        config_dir()
    assert "\n" not in str(exc.value)
    assert "configs were not found" in str(exc.value)
    assert ENV_CONFIG_DIR in str(exc.value)


def test_where_each_place_is() -> None:
    assert common._source_tree_configs() == (REPO_ROOT / "configs").resolve()
    # Installed, the configs sit inside the package: robustai/configs/ (see pyproject.toml).
    assert common._installed_configs() == Path(robustai.__file__).resolve().parent / "configs"
