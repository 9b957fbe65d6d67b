"""The vast.ai lifecycle, end to end through the real `scripts/vast.sh`, with stand-ins for
`vastai`, `ssh` and `rsync` (tests/deploy_standins) that record every call and answer from a
scenario. Proves: destroy on success, task failure, wait timeout, SIGINT and SIGTERM; the price
guard; the lock; quoting of task lines; batching of speak lines; no secret on any recorded command
line or log; --keep keeps.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STANDINS = REPO / "tests" / "deploy_standins"
SCRIPT = REPO / "scripts" / "vast.sh"
API_KEY = "sekret-api-key-4242"
REGISTRY_TOKEN = "sekret-registry-token-9191"

OFFERS = [
    {
        "id": 11,
        "gpu_name": "RTX 4090",
        "num_gpus": 1,
        "gpu_ram": 24564,
        "compute_cap": 890,
        "dlperf_per_dphtotal": 300.0,
        "dph_total": 0.50,
    },  # $365/month: over a $300 cap
    {
        "id": 12,
        "gpu_name": "RTX 3090",
        "num_gpus": 1,
        "gpu_ram": 24576,
        "compute_cap": 860,
        "dlperf_per_dphtotal": 250.0,
        "dph_total": 0.25,
    },  # $182.5/month
]


def make_checkout(root: Path) -> Path:
    """A checkout with the real scripts/vast.sh and lib/, and the apps the tasks name, so the
    test does not depend on which apps other work has landed yet."""
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "vast.sh").write_bytes(SCRIPT.read_bytes())
    (root / "scripts" / "vast.sh").chmod(0o755)
    (root / "lib").symlink_to(REPO / "lib")
    for app in ("voice-synth", "voice-clone", "voice-split", "voice-register"):
        (root / "apps" / app).mkdir(parents=True)
        (root / "apps" / app / f"{app}.py").write_text("")
    (root / "run-direct").write_text("#!/bin/sh\n")
    return root / "scripts" / "vast.sh"


class Harness:
    def __init__(self, tmp: Path, scenario: dict):
        self.tmp = tmp
        self.script = make_checkout(tmp / "checkout")
        self.state = tmp / "fake"
        self.state.mkdir()
        (self.state / "scenario.json").write_text(json.dumps({"offers": OFFERS, **scenario}))
        self.run_dir = tmp / "runs"
        self.lock = tmp / "vast.lock"
        self.env = {
            **os.environ,
            "PATH": f"{STANDINS}{os.pathsep}{os.environ['PATH']}",
            "FAKE_VAST_DIR": str(self.state),
            "VASTAI_BIN": str(STANDINS / "vastai"),
            "VAST_API_KEY": API_KEY,
            "VAST_REGISTRY_USER": "someone",
            "VAST_REGISTRY_TOKEN": REGISTRY_TOKEN,
            "VAST_IMAGE": "ghcr.io/someone/py-audio-box:cuda",
            "VAST_MAX_MONTHLY_PRICE": "300",
            "VAST_RUN_DIR": str(self.run_dir),
            "VAST_LOCK_FILE": str(self.lock),
            "VAST_POLL": "0.05",
            "PYTHON": sys.executable,
        }

    def argv(self, *args: str, job: str = "job1") -> list[str]:
        return [str(self.script), args[0], "--job", job, *args[1:]]

    def run(self, *args: str, job: str = "job1", timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.argv(*args, job=job),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.tmp,
        )

    def calls(self, tool: str | None = None) -> list[dict]:
        path = self.state / "calls.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return [r for r in rows if tool is None or r["tool"] == tool]

    def vast_words(self) -> list[list[str]]:
        return [[a for a in c["argv"] if a != "--raw"] for c in self.calls("vastai")]

    def destroyed(self) -> list[str]:
        return [w[2] for w in self.vast_words() if w[:2] == ["destroy", "instance"]]

    def created(self) -> bool:
        return any(w[:2] == ["create", "instance"] for w in self.vast_words())

    def task_commands(self) -> list[str]:
        return [
            c["argv"][-1]
            for c in self.calls("ssh")
            if "run-direct" in c["argv"][-1] or "cd /app" in c["argv"][-1]
        ]

    def summary(self, job: str = "job1") -> dict:
        return json.loads((self.run_dir / job / "summary.json").read_text())

    def assert_no_secret_anywhere(self, proc: subprocess.CompletedProcess | None = None) -> None:
        blobs = [(self.state / "calls.jsonl").read_text()]
        blobs += [p.read_text(errors="replace") for p in self.run_dir.rglob("*") if p.is_file()]
        if proc is not None:
            blobs += [proc.stdout or "", proc.stderr or ""]
        for blob in blobs:
            assert API_KEY not in blob
            assert REGISTRY_TOKEN not in blob


@pytest.fixture
def harness(tmp_path):
    def make(**scenario) -> Harness:
        return Harness(tmp_path, scenario)

    return make


def test_success_runs_task_pulls_work_writes_summary_and_destroys(harness):
    h = harness()
    proc = h.run("run", "--", "voice-synth", "speak", "--voice", "narrator", "--text", "Hello there, world")
    assert proc.returncode == 0, proc.stderr
    assert h.destroyed() == ["1000"]
    words = h.vast_words()
    create = next(w for w in words if w[:2] == ["create", "instance"])
    assert create[2] == "12"  # the affordable offer, not the better but too dear one
    assert create[create.index("--label") + 1] == "py-audio-box:job1"
    # One task, the quoted text one argument.
    (cmd,) = h.task_commands()
    tail = shlex.split(cmd.split("./run-direct ", 1)[1])
    assert tail == ["voice-synth", "speak", "--voice", "narrator", "--text", "Hello there, world"]
    summary = h.summary()
    assert summary["exit_code"] == 0 and summary["instance_destroyed"] is True
    assert summary["tasks"][0]["status"] == "ok"
    assert summary["offer"]["price_per_month"] == pytest.approx(182.5)
    assert (h.run_dir / "job1" / "work" / "pulled.txt").exists()
    # ssh: per-run known_hosts with accept-new, never disabled host key checking.
    for call in h.calls("ssh"):
        joined = " ".join(call["cmdline"])
        assert "StrictHostKeyChecking=accept-new" in joined
        assert f"UserKnownHostsFile={h.run_dir / 'job1' / 'known_hosts'}" in joined
        assert "StrictHostKeyChecking=no" not in joined
    h.assert_no_secret_anywhere(proc)


def test_secrets_reach_vastai_only_through_the_environment(harness):
    h = harness()
    proc = h.run("run", "--", "voice-synth", "list-voices", "--json")
    assert proc.returncode == 0, proc.stderr
    create = next(c for c in h.calls("vastai") if c["argv"][:2] == ["create", "instance"])
    # The registry login arrived inside the vastai process ...
    assert create["login"] == {
        "user": "someone",
        "registry": "ghcr.io",
        "token_sha256": hashlib.sha256(REGISTRY_TOKEN.encode()).hexdigest(),
    }
    # ... while no command line the OS saw holds a secret.
    assert all(c["api_key_in_env"] for c in h.calls("vastai"))
    assert not any(c["registry_token_in_env"] for c in h.calls("vastai"))
    assert all(c["secret_env"] == [] for c in h.calls("ssh") + h.calls("rsync"))
    h.assert_no_secret_anywhere(proc)


def test_task_failure_still_destroys_and_reports(harness):
    h = harness(task_rc={"voice-clone": 3})
    tasks = h.tmp / "tasks.txt"
    tasks.write_text(
        "voice-clone synth --ref-audio /work/ref.wav --text 'fails here' --voice-name x\n"
        "voice-synth list-voices --json\n"
    )
    proc = h.run("run", "--tasks", str(tasks))
    assert proc.returncode == 1
    assert h.destroyed() == ["1000"]
    summary = h.summary()
    assert [t["status"] for t in summary["tasks"]] == ["failed", "ok"]
    assert summary["task_failures"] == 1 and summary["instance_destroyed"] is True
    h.assert_no_secret_anywhere(proc)


def test_fail_fast_stops_after_first_failure_and_destroys(harness):
    h = harness(task_rc={"voice-clone": 3})
    tasks = h.tmp / "tasks.txt"
    tasks.write_text("voice-clone self-test\nvoice-synth list-voices\n")
    proc = h.run("run", "--fail-fast", "--tasks", str(tasks))
    assert proc.returncode == 1
    assert len(h.task_commands()) == 1
    assert h.destroyed() == ["1000"]


def test_wait_timeout_destroys(harness):
    h = harness(status_sequence=["loading"])
    proc = h.run("run", "--wait-running", "0.5", "--", "voice-synth", "list-voices")
    assert proc.returncode == 4
    assert "not running after" in proc.stderr
    assert h.destroyed() == ["1000"]
    assert h.task_commands() == []
    assert h.summary()["instance_destroyed"] is True


def test_unreachable_ssh_destroys(harness):
    h = harness(ssh_probe_failures=10_000)
    proc = h.run("run", "--wait-ssh", "0.5", "--", "voice-synth", "list-voices")
    assert proc.returncode == 4
    assert h.destroyed() == ["1000"]


def test_max_duration_kills_a_hung_task_pulls_and_destroys(harness):
    h = harness(task_sleep={"voice-synth": 30})
    started = time.monotonic()
    proc = h.run("run", "--max-duration", "3", "--", "voice-synth", "speak", "--voice", "a", "--text", "b")
    assert time.monotonic() - started < 20
    assert proc.returncode == 4
    assert h.destroyed() == ["1000"]
    assert (h.run_dir / "job1" / "work" / "pulled.txt").exists()


def test_destroy_is_retried(harness):
    h = harness(destroy_failures=2)
    proc = h.run("run", "--", "voice-synth", "list-voices")
    assert proc.returncode == 0, proc.stderr
    assert h.destroyed() == ["1000", "1000", "1000"]
    assert h.summary()["instance_destroyed"] is True


@pytest.mark.parametrize(
    "signum,to_group",
    [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["SIGINT", "SIGTERM", "terminal-ctrl-c"],
)
def test_signal_during_task_destroys(harness, signum, to_group):
    """to_group: like Ctrl-C at a terminal, the whole process group (ssh included) gets SIGINT."""
    h = harness(task_sleep={"voice-synth": 60})
    proc = subprocess.Popen(
        h.argv("run", "--", "voice-synth", "speak", "--voice", "a", "--text", "b"),
        env=h.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=h.tmp,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not h.task_commands():
        assert time.monotonic() < deadline, "the task never started"
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.3)
    if to_group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, err
    assert h.destroyed() == ["1000"]
    summary = h.summary()
    assert summary["instance_destroyed"] is True and "interrupted" in summary["reason"]


def test_price_guard_refuses_before_creating(harness):
    h = harness()
    h.env["VAST_MAX_MONTHLY_PRICE"] = "100"
    proc = h.run("run", "--", "voice-synth", "list-voices")
    assert proc.returncode == 3
    assert "price guard" in proc.stderr
    assert not h.created() and h.destroyed() == []


def test_lock_refuses_a_second_run(harness):
    h = harness()
    with open(h.lock, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = h.run("run", "--", "voice-synth", "list-voices")
    assert proc.returncode == 3
    assert "refusing to provision" in proc.stderr
    assert not h.created()


def test_own_alive_instance_refuses_but_others_are_ignored(harness):
    h = harness(instances=[{"id": 5, "label": "py-audio-box:older", "actual_status": "running"}])
    proc = h.run("run", "--", "voice-synth", "list-voices")
    assert proc.returncode == 3 and "already alive" in proc.stderr
    assert not h.created() and h.destroyed() == []

    (h.state / "state.json").unlink(missing_ok=True)
    (h.state / "calls.jsonl").unlink()
    (h.state / "scenario.json").write_text(
        json.dumps(
            {
                "offers": OFFERS,
                "instances": [{"id": 6, "label": "someone-elses-training", "actual_status": "running"}],
            }
        )
    )
    proc = h.run("run", "--", "voice-synth", "list-voices", job="job2")
    assert proc.returncode == 0, proc.stderr
    assert h.destroyed() == ["1000"]  # ours only; instance 6 untouched


def test_keep_keeps_the_instance(harness):
    h = harness()
    proc = h.run("run", "--keep", "--", "voice-synth", "list-voices")
    assert proc.returncode == 0, proc.stderr
    assert h.destroyed() == []
    assert h.summary()["instance_destroyed"] is False
    assert "BILLS" in proc.stderr


def test_task_file_quoting_batching_and_push_cache(harness):
    h = harness()
    voices = h.tmp / "voices"
    (voices / "narrator").mkdir(parents=True)
    tasks = h.tmp / "tasks.txt"
    tasks.write_text(
        "# comment and blank lines are skipped\n\n"
        "voice-synth speak --voice narrator --text \"It's a long way, isn't it?\"\n"
        "voice-synth speak --speaker Ryan --text 'Second line' --language English\n"
        "voice-clone synth --ref-audio '/work/my ref.wav' --text \"two words\" --voice-name x\n"
        "voice-synth speak --voice narrator --text 'alone' --seed 3\n"
        "!nvidia-smi -L\n"
    )
    proc = h.run("run", "--push-cache", str(voices), "--tasks", str(tasks))
    assert proc.returncode == 0, proc.stderr
    cmds = h.task_commands()
    assert len(cmds) == 4
    # The two consecutive speak lines became one batch process.
    assert shlex.split(cmds[0].split("./run-direct ", 1)[1]) == [
        "voice-synth",
        "batch",
        "/work/.vast-batches/batch-000.jsonl",
    ]
    items = [
        json.loads(x) for x in (h.run_dir / "job1" / "batches" / "batch-000.jsonl").read_text().splitlines()
    ]
    assert items == [
        {"voice": "narrator", "text": "It's a long way, isn't it?"},
        {"speaker": "Ryan", "text": "Second line", "language": "English"},
    ]
    assert shlex.split(cmds[1].split("./run-direct ", 1)[1]) == [
        "voice-clone",
        "synth",
        "--ref-audio",
        "/work/my ref.wav",
        "--text",
        "two words",
        "--voice-name",
        "x",
    ]
    # A flag the batch format has no field for keeps the line in its own process.
    assert shlex.split(cmds[2].split("./run-direct ", 1)[1])[-2:] == ["--seed", "3"]
    assert cmds[3].endswith("cd /app && nvidia-smi -L")
    pushes = [c["argv"] for c in h.calls("rsync") if c["argv"][-1].endswith(":/cache/voices/")]
    assert pushes and pushes[0][-2] == f"{voices}/"
    assert h.destroyed() == ["1000"]


def test_unknown_app_is_refused_before_provisioning(harness):
    h = harness()
    proc = h.run("run", "--", "no-such-app", "--x")
    assert proc.returncode == 2 and "unknown app" in proc.stderr
    assert h.calls() == []


def test_vastai_destroy_and_status_commands(harness):
    h = harness(
        instances=[
            {"id": 7, "label": "py-audio-box:j", "actual_status": "running", "dph_total": 0.2},
            {"id": 8, "label": "other", "actual_status": "running"},
        ]
    )
    proc = subprocess.run([str(h.script), "status"], env=h.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "py-audio-box:j" in proc.stdout and "other" not in proc.stdout
    proc = subprocess.run(
        [str(h.script), "destroy", "7"], env=h.env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert h.destroyed() == ["7"]
    assert ["destroy", "instance", "7", "-y"] in h.vast_words()
    proc = subprocess.run([str(h.script), "search"], env=h.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "RTX 3090" in proc.stdout
    search = next(w for w in h.vast_words() if w[:2] == ["search", "offers"])
    assert search[2] == "reliability > 0.98 gpu_ram >= 20 compute_cap >= 800 compute_cap < 1200"
    assert search[search.index("--order") + 1] == "dlperf_per_dphtotal-"
