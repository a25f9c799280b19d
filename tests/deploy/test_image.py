"""The container image, as far as it can be checked without a container
engine: the Dockerfile's essentials, the build context, and the wheel the
builder stage makes (built here from exactly what the Dockerfile copies)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy import manifests as m
from tests.deploy.manifests import Obj

DOCKERFILE = m.REPO / "Dockerfile"
DOCKERIGNORE = m.REPO / ".dockerignore"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, rest of line)

    def all(self, instruction: str) -> list[str]:
        return [rest for ins, rest in self.instructions if ins == instruction]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined
    and ARG references in FROM resolved."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda mm: args[mm.group(1) or mm.group(2)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            assert instruction == "ARG", f"only ARG may precede the first FROM, not {instruction}"
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            stages[-1].instructions.append((instruction, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())[1]


def test_multi_stage_on_slim_bookworm(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    for stage in stages:
        assert stage.base == "python:3.11-slim-bookworm", stage.base
    builder, runtime = stages[0], stages[-1]
    assert builder.name, "the builder stage is named, so the runtime can take its wheels"
    assert any("pip wheel" in run for run in builder.all("RUN")), "the builder stage builds wheels"
    assert any(f"from={builder.name}" in run for run in runtime.all("RUN")) or \
        any(f"--from={builder.name}" in c for c in runtime.all("COPY")), "the runtime takes the builder's wheels"


def test_runtime_installs_the_wheels_offline_and_no_sources(stages: list[Stage]) -> None:
    runtime = stages[-1]
    installs = [r for r in runtime.all("RUN") if "pip install" in r]
    assert installs and all("--no-index" in r for r in installs), "runtime installs only the built wheels"
    assert not runtime.all("COPY") and not runtime.all("ADD"), "no sources or build context in the runtime stage"
    assert not any("build-essential" in r or "gcc" in r for r in runtime.all("RUN")), "no compiler at run time"


def test_runtime_has_the_agents_debian_tools(stages: list[Stage]) -> None:
    runtime = stages[-1]
    apt = [r for r in runtime.all("RUN") if "apt-get install" in r]
    assert apt, "the runtime installs Debian packages"
    words = set(shlex.split(" ".join(apt)))
    assert {"iptables", "ipset", "conntrack"} <= words
    assert "--no-install-recommends" in words
    assert any("rm -rf /var/lib/apt/lists" in r for r in apt), "apt lists are removed in the same layer"


def test_non_root_user_matches_the_controller_deployment(stages: list[Stage], rendered: dict[str, list[Obj]]) -> None:
    runtime = stages[-1]
    users = runtime.all("USER")
    assert users, "the image's default user is set"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric, non-root (runAsNonRoot can only verify a numeric user)"
    assert any(re.search(rf"useradd\b.*--uid {uid}\b", r) for r in runtime.all("RUN")), "the user exists"
    dep = m.one(rendered["aks-kubenet"], "Deployment", m.CONTROLLER)
    assert m.pod_spec(dep)["securityContext"]["runAsUser"] == int(uid)


def test_entrypoint_is_the_stockade_command(stages: list[Stage]) -> None:
    (entrypoint,) = stages[-1].all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["stockade"], "exec form, so signals reach the process"


def _builder_copies(stages: list[Stage]) -> list[str]:
    sources = []
    for rest in stages[0].all("COPY"):
        words = [w for w in shlex.split(rest) if not w.startswith("--")]
        sources += words[:-1]
    return sources


def _ignored(rel: str, patterns: list[str]) -> bool:
    """.dockerignore semantics, enough for our file: last match wins, ! re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.replace("**/", "")) for p in prefixes):
            ignored = not negate
    return ignored


def test_build_context_has_what_the_builder_copies(stages: list[Stage]) -> None:
    patterns = [p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")]
    for source in _builder_copies(stages):
        path = m.REPO / source
        assert path.exists(), f"COPY {source}: no such path"
        files = [path] if path.is_file() else [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
        for f in files:
            rel = f.relative_to(m.REPO).as_posix()
            assert not _ignored(rel, patterns), f".dockerignore leaves {rel} out of the build context"
    # And the context stays small: tests, docs, .git are out.
    for rel in ("tests/test_state.py", ".git/HEAD", "docs/install-aks.md", "deploy/base/agent.yaml"):
        assert _ignored(rel, patterns), f"{rel} would be sent to the builder"


def test_wheel_builds_from_what_the_dockerfile_copies(stages: list[Stage], tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for source in _builder_copies(stages):
        path = m.REPO / source
        if path.is_dir():
            shutil.copytree(path, src / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(path, src / source)
    out = tmp_path / "wheels"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
         "--disable-pip-version-check", "-q", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, f"pip wheel failed:\n{done.stdout}\n{done.stderr}"
    (wheel,) = out.glob("stockade-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_text = zf.read(entry_points).decode()
    assert re.search(r"^stockade\s*=\s*stockade\.cli:main$", entry_text, re.M), entry_text
    # Every Python module of the three packages made it in (a subpackage
    # without __init__.py, or outside the include list, would be dropped).
    expected = {p.relative_to(src).as_posix() for pkg in ("stockade", "controller", "nodeagent")
                for p in (src / pkg).rglob("*.py")}
    assert expected, "no sources were copied"
    missing = sorted(expected - names)
    assert not missing, f"modules missing from the wheel: {missing}"
    assert not any(n.startswith("tests/") for n in names), "tests are not shipped"
