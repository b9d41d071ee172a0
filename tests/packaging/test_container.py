"""The container image's contract, read from Dockerfile and .dockerignore (no Docker needed):
a pinned base image, a non-root user, `robustai` as the entrypoint, no pip caches, the dashboard's
port, no secrets in the image and none in the build context."""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(os.path.abspath(__file__)).parent.parent.parent


@dataclass
class Instruction:
    keyword: str
    args: str
    stage: int  # index of the FROM this instruction belongs to (-1: before the first FROM)


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comment lines dropped."""
    out: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may sit between continuation lines, too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, args.strip(), stage))
    assert not pending, "Dockerfile ends inside a continued line"
    return out


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile((REPO_ROOT / "Dockerfile").read_text())


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def global_args(instructions: list[Instruction]) -> dict[str, str]:
    args = {}
    for ins in instructions:
        if ins.keyword == "ARG" and ins.stage == -1:
            name, _, default = ins.args.partition("=")
            args[name.strip()] = default.strip().strip('"')
    return args


def test_base_images_are_pinned_by_exact_tag(dockerfile: list[Instruction]) -> None:
    args = global_args(dockerfile)
    stages: set[str] = set()
    froms = [i for i in dockerfile if i.keyword == "FROM"]
    assert froms
    for ins in froms:
        words = ins.args.split()
        words = [w for w in words if not w.startswith("--")]  # --platform=...
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
        if len(words) >= 3 and words[1].lower() == "as":
            stages.add(words[2].lower())
        if image.lower() in stages:
            continue  # FROM an earlier stage
        assert "$" not in image, f"FROM {ins.args}: {image} has no default"
        name, _, digest = image.partition("@")
        tag = name.split("/")[-1].partition(":")[2]  # a registry's host:port is not a tag
        assert tag, f"FROM {image}: no tag (that is :latest)"
        assert tag != "latest", f"FROM {image}: latest is not a pin"
        assert re.match(r"\d+\.\d+\.\d+", tag), f"FROM {image}: tag {tag} is not an exact version"
        assert not digest or re.fullmatch(r"sha256:[0-9a-f]{64}", digest), image


def test_runs_as_a_user_other_than_root(dockerfile: list[Instruction]) -> None:
    users = []
    for ins in final_stage(dockerfile):
        if ins.keyword == "USER":
            users.append(ins.args.split(":")[0])
        if ins.keyword == "ENTRYPOINT":
            break
    assert users, "no USER before ENTRYPOINT in the final stage: the container runs as root"
    assert users[-1] not in ("root", "0"), f"USER {users[-1]}"


def test_entrypoint_is_robustai(dockerfile: list[Instruction]) -> None:
    entrypoints = [i for i in final_stage(dockerfile) if i.keyword == "ENTRYPOINT"]
    assert entrypoints, "no ENTRYPOINT"
    assert json.loads(entrypoints[-1].args) == ["robustai"]  # exec form: signals reach robustai
    cmds = [i for i in final_stage(dockerfile) if i.keyword == "CMD"]
    assert cmds and isinstance(json.loads(cmds[-1].args), list)


def test_pip_keeps_no_cache(dockerfile: list[Instruction]) -> None:
    runs = [i.args for i in dockerfile if i.keyword == "RUN"]
    pip_commands = [
        cmd
        for run in runs
        for cmd in re.split(r"&&|\|\||;|\|", run)
        if re.search(r"\bpip3?\s+(install|wheel)\b", cmd)
    ]
    assert pip_commands, "the Dockerfile installs nothing with pip"
    for cmd in pip_commands:
        assert "--no-cache-dir" in shlex.split(cmd), f"pip without --no-cache-dir: {cmd.strip()}"


def test_exposes_the_dashboard_port(dockerfile: list[Instruction]) -> None:
    from robustai.dashboard.server import DEFAULT_PORT

    exposes = [i.args.split() for i in final_stage(dockerfile) if i.keyword == "EXPOSE"]
    exposed = {port.split("/")[0] for ports in exposes for port in ports}  # 6006/tcp -> 6006
    assert str(DEFAULT_PORT) in exposed


def test_python_environment(dockerfile: list[Instruction]) -> None:
    env = " ".join(i.args for i in final_stage(dockerfile) if i.keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    torch_index = [i.args for i in dockerfile if i.keyword == "ARG" and "TORCH_INDEX" in i.args]
    assert torch_index and "/cpu" in torch_index[0], "CPU PyTorch wheels must be the default"


def test_no_secrets_baked_in(dockerfile: list[Instruction]) -> None:
    secretish = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|ACCESS_DB)", re.IGNORECASE)
    for ins in dockerfile:
        if ins.keyword in ("ENV", "ARG", "LABEL"):
            names = re.findall(r"([A-Za-z_][\w.-]*)\s*=", ins.args) or [ins.args.split()[0]]
            bad = [n for n in names if secretish.search(n)]
            assert not bad, f"{ins.keyword} {ins.args}: secrets come in at run time"


# --- .dockerignore -----------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``, anchored at the context root)."""
    pattern = posixpath.normpath(pattern.strip().lstrip("/"))
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignore_patterns() -> list[str]:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def excluded(path: str, patterns: list[str]) -> bool:
    """Whether ``docker build`` leaves ``path`` out of the context (a folder takes its files)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
    result = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern_regex(pattern[1:] if negated else pattern)
        if any(regex.match(prefix) for prefix in prefixes):
            result = not negated
    return result


@pytest.mark.parametrize(
    "path",
    [
        "experiments/digits_small_cnn_fgsm_rs/2024-01-01/00-00-00/metrics.json",
        "multirun/2024-01-01/00-00-00/0/metrics.json",
        "outputs/x.log",
        "data/MNIST/raw/t10k-images-idx3-ubyte.gz",
        ".venv/bin/python",
        ".git/HEAD",
        ".pytest_cache/v/cache/nodeids",
        ".ruff_cache/CACHEDIR.TAG",
        ".hypothesis/examples/x",
        "robustai/__pycache__/errors.cpython-311.pyc",
        "robustai.egg-info/PKG-INFO",
        "build/lib/robustai/__init__.py",
        "dist/robustai-0.1.0-py3-none-any.whl",
        ".env",
        "signing.key",
        "deploy/tls.pem",
        "access.db",
        ".robustai/access.db",
        "dashboard-access.log",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert excluded(path, dockerignore_patterns()), f"{path} would be sent to docker build"


def test_dockerignore_keeps_what_the_build_copies(dockerfile: list[Instruction]) -> None:
    """Every file that a COPY names (configs/ and robustai/ included) reaches the build."""
    patterns = dockerignore_patterns()
    copies = [i for i in dockerfile if i.keyword == "COPY" and "--from" not in i.args]
    assert copies
    for ins in copies:
        sources = [s for s in ins.args.split()[:-1] if not s.startswith("--")]
        for source in sources:
            path = REPO_ROOT / source
            assert path.exists(), f"COPY {source}: not in the repository"
            files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
            for f in files:
                rel = f.relative_to(REPO_ROOT).as_posix()
                if "__pycache__" in rel:
                    continue
                assert not excluded(rel, patterns), f"{rel} is needed by COPY {source}"


def test_the_image_builds_its_wheel_from_what_the_wheel_needs(
    dockerfile: list[Instruction],
) -> None:
    """The wheel built inside the image is built from the files the build stage copies: without
    LICENSE (which pyproject's license-files names) the image shipped Apache-2.0 code without
    the license's text."""
    import tomllib

    copied = {
        s.rstrip("/")
        for i in dockerfile
        if i.keyword == "COPY" and "--from" not in i.args
        for s in i.args.split()[:-1]
        if not s.startswith("--")
    }
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert set(project["license-files"]) <= copied
    assert {"pyproject.toml", project["readme"], "robustai", "configs"} <= copied
