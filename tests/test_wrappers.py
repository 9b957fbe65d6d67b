"""./run-direct, ./run (the parts that need no Docker engine) and scripts/publish.sh (dry run)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)


def test_run_direct_runs_an_app_in_the_current_environment():
    if not (REPO / "apps" / "voice-synth" / "voice-synth.py").is_file():
        pytest.skip("apps/voice-synth/voice-synth.py is not written yet")
    proc = _run(
        [str(REPO / "run-direct"), "voice-synth", "--help"], env={**os.environ, "PYTHON": sys.executable}
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage" in proc.stdout.lower()


def test_every_app_is_a_console_script_and_an_apps_entry():
    """pyproject's [project.scripts] (what `make venv` / `pip install .` put on PATH) and apps/ (what ./run
    and ./run-direct start) name the same apps, each the main() of its audiobox.cli module."""
    import importlib

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    apps = {p.name for p in (REPO / "apps").iterdir() if (p / f"{p.name}.py").is_file()}
    assert set(scripts) == apps and "voice-models" in apps
    for name, target in scripts.items():
        module = f"audiobox.cli.{name.replace('-', '_')}"
        assert target == f"{module}:main" and callable(importlib.import_module(module).main)
        assert f"from {module} import main" in (REPO / "apps" / name / f"{name}.py").read_text()


def test_run_direct_names_itself_in_the_models_command(tmp_path):
    """Started through ./run-direct, the way to get a missing model is a command that works as typed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "AUDIOBOX_"))}
    env.update(PYTHON=sys.executable, HF_HUB_OFFLINE="1")
    proc = _run([str(REPO / "run-direct"), "voice-models", "list", "--cache", str(tmp_path)], env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"get them with `{REPO / 'run-direct'} voice-models download --cache {tmp_path}`" in proc.stdout
    assert f"caches: {tmp_path / 'huggingface' / 'hub'} (Qwen3-TTS, Demucs)" in proc.stdout


def test_next_steps_name_the_launcher_that_ran_the_app(tiny_models, tmp_path):
    """A printed next step works as typed: through ./run-direct it says ./run-direct, installed it says the
    console script."""
    argv = ["voice-synth", "register-builtin", "--voice-name", "host", "--speaker", "aiden", "--force",
            "--model", str(tiny_models / "custom_voice"), "--cache", str(tmp_path)]  # fmt: skip
    env = {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    env.pop("AUDIOBOX_LAUNCHER", None)
    proc = _run([str(REPO / "run-direct"), *argv], env=env)
    assert proc.returncode == 0, proc.stderr
    assert f'next: {REPO / "run-direct"} voice-synth speak --voice host --text "Hello"' in proc.stdout
    proc = _run([sys.executable, str(REPO / "apps" / "voice-synth" / "voice-synth.py"), *argv[1:]], env=env)
    assert proc.returncode == 0, proc.stderr
    assert 'next: voice-synth speak --voice host --text "Hello"' in proc.stdout


@pytest.mark.parametrize("wrapper", ["run-direct", "run"])
def test_unknown_app_lists_the_apps(wrapper):
    proc = _run([str(REPO / wrapper), "nope"])
    assert proc.returncode == 2
    assert "unknown app 'nope'" in proc.stderr
    apps = sorted(p.name for p in (REPO / "apps").iterdir() if (p / f"{p.name}.py").is_file())
    assert apps, "no app found"
    for app in apps:
        assert f"  {app}\n" in proc.stderr


def _with_docker_stand_in(tmp_path, script: str) -> dict:
    """An environment whose `docker` is a stand-in answering like the real client in some broken state."""
    stand_in = tmp_path / "bin" / "docker"
    stand_in.parent.mkdir()
    stand_in.write_text("#!/usr/bin/env bash\n" + script)
    stand_in.chmod(0o755)
    return {**os.environ, "PATH": f"{stand_in.parent}:/usr/bin:/bin"}


def test_run_without_a_docker_engine_points_to_run_direct(tmp_path):
    """The client is installed but no engine answers: one line naming ./run-direct, no build attempt."""
    env = _with_docker_stand_in(
        tmp_path,
        "# answers like the real client whose daemon is down\n"
        'if [[ "$1" == compose && "$2" == version ]]; then echo "Docker Compose version v2.40.3"; exit 0; fi\n'
        'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.'
        ' Is the docker daemon running?" >&2\n'
        "exit 1\n",
    )
    proc = _run([str(REPO / "run"), "voice-synth", "--help"], env=env)
    assert proc.returncode == 2, proc.stderr
    assert "no Docker engine answers (Cannot connect to the Docker daemon" in proc.stderr
    assert "./run-direct voice-synth ..." in proc.stderr and "building" not in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_run_without_the_compose_plugin_points_to_run_direct(tmp_path):
    """A Docker client without the compose plugin answers as the real one does; ./run names ./run-direct."""
    env = _with_docker_stand_in(
        tmp_path,
        'if [[ "$1" == compose ]]; then echo "docker: \'compose\' is not a docker command." >&2; exit 1; fi\n'
        "exit 0\n",
    )
    proc = _run([str(REPO / "run"), "voice-models", "list"], env=env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "'docker compose') is missing" in proc.stderr and "./run-direct voice-models ..." in proc.stderr


def test_run_direct_refuses_path_like_app_names():
    proc = _run([str(REPO / "run-direct"), "../lib"])
    assert proc.returncode == 2 and "unknown app" in proc.stderr


@pytest.fixture
def publish_checkout(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "publish.sh", root / "scripts" / "publish.sh")
    for name in ("Dockerfile", "Dockerfile.cuda-base", "Dockerfile.cuda"):
        (root / name).write_text("FROM scratch\n")
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    sha = subprocess.run(
        [*git, "rev-parse", "--short=12", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return root, sha


def test_publish_tags_by_git_sha_on_a_clean_tree(publish_checkout):
    root, sha = publish_checkout
    env = {**os.environ, "PAB_REGISTRY": "ghcr.io/someone"}
    proc = _run([str(root / "scripts" / "publish.sh"), "cpu", "cuda", "--dry-run"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"-t ghcr.io/someone/py-audio-box:latest -t ghcr.io/someone/py-audio-box:cpu-{sha}" in proc.stdout
    assert f"-t ghcr.io/someone/py-audio-box:cuda-{sha}" in proc.stdout
    assert "BASE_IMAGE=ghcr.io/someone/py-audio-box:cuda-base" in proc.stdout


def test_publish_refuses_a_dirty_tree_unless_allowed(publish_checkout):
    root, sha = publish_checkout
    (root / "Dockerfile").write_text("FROM scratch\n# edited\n")
    env = {**os.environ, "PAB_REGISTRY": "ghcr.io/someone"}
    proc = _run([str(root / "scripts" / "publish.sh"), "cpu", "--dry-run"], env=env)
    assert proc.returncode == 2 and "uncommitted changes" in proc.stderr
    proc = _run([str(root / "scripts" / "publish.sh"), "cpu", "--dry-run", "--allow-dirty"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert "py-audio-box:latest" in proc.stdout and sha not in proc.stdout


def _stub_bin(folder: Path, uid: int, apt: bool) -> Path:
    """A PATH with bash, env and python3 but none of the system tools; `id -u` answers `uid`; with
    `apt`, an apt-get stand-in that logs its arguments and installs empty tools the way apt would."""
    folder.mkdir()
    for tool in ("bash", "env"):
        (folder / tool).symlink_to(shutil.which(tool))
    (folder / "python3").symlink_to(sys.executable)
    (folder / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    if apt:
        (folder / "apt-get").write_text(
            "#!/bin/sh\n"
            f'echo "$*" >> "{folder}/apt.log"\n'
            '[ "$1" = install ] || exit 0\n'
            "shift 3\n"
            f'for t in "$@"; do printf "#!/bin/sh\\n" > "{folder}/$t"; {shutil.which("chmod")} +x "{folder}/$t"; done\n'
        )
    for stub in folder.iterdir():
        if not stub.is_symlink():
            stub.chmod(0o755)
    return folder


@pytest.mark.parametrize(
    "uid, apt, code, message",
    [
        (
            1000,
            False,
            2,
            "no apt-get here: install ffmpeg sox espeak-ng chromium rsync with your package manager",
        ),
        (1000, True, 2, "installing needs root: run 'sudo make system-deps'"),
        (0, True, 0, "apt-get install ffmpeg sox espeak-ng chromium rsync"),
    ],
)
def test_system_deps_installs_what_is_missing_or_says_how(tmp_path, uid, apt, code, message):
    stubs = _stub_bin(tmp_path / "bin", uid, apt)
    script = REPO / "scripts" / "system-deps.sh"
    proc = _run([str(stubs / "bash"), str(script)], env={"PATH": str(stubs), "HOME": str(tmp_path)})
    assert proc.returncode == code and message in proc.stderr, proc.stderr
    if code == 0:
        assert (stubs / "apt.log").read_text().splitlines() == [
            "update -qq",
            "install -y -qq ffmpeg sox espeak-ng chromium rsync",
        ]
        again = _run([str(stubs / "bash"), str(script)], env={"PATH": str(stubs), "HOME": str(tmp_path)})
        assert again.returncode == 0 and again.stderr == ""  # nothing missing: silent


def test_make_test_installs_system_packages_first():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    proc = _run(["make", "-n", "--no-print-directory", "-C", str(REPO), "test"])
    lines = proc.stdout.splitlines()
    first_test = next(i for i, line in enumerate(lines) if "pytest" in line)
    assert "scripts/system-deps.sh" in lines[0] and 0 < first_test
