"""The vast.ai lifecycle end to end: the real `scripts/vast.sh`, the real `vastai` 1.9.1 CLI code
against a loopback fake of the vast.ai API (tests/deploy_standins/fakevast.py) that fails the ways
the real one does (HTTP 500, 429, {"success": false}), real rsync, and an `ssh` stand-in that runs
each remote command in the fake instance's host folder.

Every exit path ends with each instance gone, checked against the fake API's state, or reported
loudly with its id: success, task failure, timeout, SIGINT, SIGTERM, SIGHUP, stderr closed, stderr
a broken pipe, destroy failing N times then succeeding, destroy failing always, kill -9 then
`vast-reap`, and the instance's own self-destruct; for K = 1 and K = 3 instances.
"""

from __future__ import annotations

import contextlib
import fcntl
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
REAL_VASTAI = Path(sys.executable).parent / "vastai"
API_KEY = "sekret-api-key-4242"
REGISTRY_TOKEN = "sekret-registry-token-9191"

sys.path.insert(0, str(STANDINS))
from fakevast import FakeVast  # noqa: E402

pytestmark = pytest.mark.skipif(
    not REAL_VASTAI.exists(), reason="the cloud extra (vastai 1.9.1) is not installed"
)

OFFERS = [
    # $0.50/h: $365/month, over a $300 cap
    {"id": 11, "gpu_name": "RTX 4090", "num_gpus": 1, "gpu_ram": 24564, "compute_cap": 890,
     "dlperf_per_dphtotal": 300.0, "dph_total": 0.50},
    # priced by the search with the disk asked for: $0.23/h + 60 GB at $0.15/GB/month = $0.2425/h
    {"id": 12, "gpu_name": "RTX 3090", "num_gpus": 1, "gpu_ram": 24576, "compute_cap": 860,
     "dlperf_per_dphtotal": 250.0, "dph_base": 0.23, "storage_cost": 0.15},
    {"id": 13, "gpu_name": "RTX A5000", "num_gpus": 1, "gpu_ram": 24564, "compute_cap": 860,
     "dlperf_per_dphtotal": 200.0, "dph_total": 0.21},
    {"id": 14, "gpu_name": "RTX 3080", "num_gpus": 1, "gpu_ram": 20000, "compute_cap": 860,
     "dlperf_per_dphtotal": 150.0, "dph_total": 0.20},
    {"id": 15, "gpu_name": "A4000", "num_gpus": 1, "gpu_ram": 20000, "compute_cap": 860,
     "dlperf_per_dphtotal": 120.0, "dph_total": 0.19},
]  # fmt: skip

# The app on the fake instance: records its arguments, writes one output per call, and fails or
# hangs when its arguments say so.
RUN_DIRECT = r"""#!/bin/sh
echo "$*" >> "$AUDIOBOX_WORK/ran.txt"
what="$* $(cat "$3" 2>/dev/null)"
shard=$(echo "$*" | sed -n 's/.*--shard \([0-9]*\)\/.*/\1/p')
case "$what" in *"FAILSHARD${shard:-x}"*) exit 3;; *FAIL\ *|*FAIL) exit 3;; esac
case "$what" in *HANG*) sleep 60;; esac
mkdir -p "$AUDIOBOX_WORK/out"
echo "$*" > "$AUDIOBOX_WORK/out/$(echo "$*" | cksum | cut -d' ' -f1).txt"
"""


@pytest.fixture(scope="session")
def fake_api():
    fake = FakeVast(API_KEY)
    yield fake
    fake.close()


@pytest.fixture(scope="session")
def zygote(fake_api, tmp_path_factory):
    """The real vastai CLI code, imported once (see deploy_standins/vastai_zygote.py)."""
    home = tmp_path_factory.mktemp("vastai-home")
    sock = str(home / "z.sock")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "VAST_URL": fake_api.url,
        "VASTAI_NO_UPDATE_CHECK": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, str(STANDINS / "vastai_zygote.py"), "serve", sock],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    yield sock
    proc.kill()
    proc.wait()


def make_checkout(root: Path) -> Path:
    """A checkout with the real scripts/vast.sh and lib/, and stand-in apps."""
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "vast.sh").write_bytes(SCRIPT.read_bytes())
    (root / "scripts" / "vast.sh").chmod(0o755)
    (root / "lib").symlink_to(REPO / "lib")
    for app in ("voice-synth", "voice-clone", "voice-split", "voice-register"):
        (root / "apps" / app).mkdir(parents=True)
        (root / "apps" / app / f"{app}.py").write_text("")
    (root / "run-direct").write_text(RUN_DIRECT)
    (root / "run-direct").chmod(0o755)
    return root / "scripts" / "vast.sh"


class Harness:
    def __init__(self, tmp: Path, fake: FakeVast, zygote: str, real_cli: bool):
        self.tmp = tmp
        self.fake = fake
        self.script = make_checkout(tmp / "checkout")
        self.state = tmp / "fake"
        self.state.mkdir()
        fake.reset(self.state, offers=[dict(o) for o in OFFERS])
        self.run_dir = tmp / "runs"
        self.lock = tmp / "vast.lock"
        home = tmp / "home"
        home.mkdir()
        # The stand-ins start with `env python3`: this interpreter, not a slower shim on PATH.
        fast_bin = tmp / "bin"
        fast_bin.mkdir()
        (fast_bin / "python3").symlink_to(sys.executable)
        self.env = {
            **os.environ,
            "PATH": os.pathsep.join([str(STANDINS), str(fast_bin), os.environ["PATH"]]),
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "FAKE_VAST_DIR": str(self.state),
            "VAST_URL": fake.url,
            "VASTAI_BIN": str(REAL_VASTAI if real_cli else STANDINS / "vastai-fast"),
            "PAB_VASTAI_ZYGOTE": zygote,
            "VAST_API_KEY": API_KEY,
            "VAST_REGISTRY_USER": "someone",
            "VAST_REGISTRY_TOKEN": REGISTRY_TOKEN,
            "VAST_IMAGE": "ghcr.io/someone/py-audio-box:cuda",
            "VAST_MAX_MONTHLY_PRICE": "300",
            "VAST_RUN_DIR": str(self.run_dir),
            "VAST_LOCK_FILE": str(self.lock),
            "VAST_POLL": "0.05",
            "VAST_DESTROY_ATTEMPTS": "4",
            "VAST_DESTROY_BACKOFF": "0.05",
            "PYTHON": sys.executable,
        }
        self.env.pop("VAST_MAX_DURATION", None)

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

    def start(self, *args: str, job: str = "job1", **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen(
            self.argv(*args, job=job), env=self.env, text=True, cwd=self.tmp, start_new_session=True, **kw
        )

    def tool(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.script), *args], env=self.env, capture_output=True, text=True, timeout=60
        )

    def wait_for_task(self, proc: subprocess.Popen, n: int = 1) -> None:
        deadline = time.monotonic() + 30
        while sum(1 for c in self.ssh_calls() if "run-direct" in c["command"]) < n:
            assert time.monotonic() < deadline, "the task never started"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.3)

    def ssh_calls(self) -> list[dict]:
        path = self.state / "ssh.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def task_commands(self) -> list[str]:
        return [
            c["command"]
            for c in self.ssh_calls()
            if "run-direct" in c["command"] or "cd /app &&" in c["command"]
        ]

    def creates(self) -> list[dict]:
        return [c for c in self.fake.calls if c["method"] == "PUT" and c["path"].startswith("/api/v0/asks/")]

    def deletes(self) -> list[dict]:
        return [c for c in self.fake.calls if c["method"] == "DELETE"]

    def summary(self, job: str = "job1") -> dict:
        return json.loads((self.run_dir / job / "summary.json").read_text())

    def assert_all_gone(self) -> None:
        assert self.fake.alive() == [], "an instance is still alive"
        assert self.creates(), "nothing was created"

    def assert_no_secret_anywhere(self, proc: subprocess.CompletedProcess | None = None) -> None:
        blobs = [(self.state / "ssh.jsonl").read_text()] if (self.state / "ssh.jsonl").exists() else []
        blobs += [p.read_text(errors="replace") for p in self.run_dir.rglob("*") if p.is_file()]
        blobs += [json.dumps(c["body"]) for c in self.fake.calls if "image_login" not in c["body"]]
        if proc is not None:
            blobs += [proc.stdout or "", proc.stderr or ""]
        for blob in blobs:
            assert API_KEY not in blob
            assert REGISTRY_TOKEN not in blob


@pytest.fixture
def harness(tmp_path, fake_api, zygote):
    made: list[Harness] = []

    def make(real_cli: bool = False) -> Harness:
        made.append(Harness(tmp_path, fake_api, zygote, real_cli))
        return made[-1]

    yield make
    fake_api.reset(None)


SPEAK = ["--", "voice-synth", "speak", "--voice", "narrator", "--text", "Hello there, world"]


def write_tasks(h: Harness, n: int, *, text: str = "line") -> Path:
    tasks = h.tmp / "tasks.txt"
    tasks.write_text("".join(f"voice-synth speak --voice v{i % 2} --text '{text} {i}'\n" for i in range(n)))
    return tasks


SHARDS = pytest.mark.parametrize("k", [1, 3], ids=["K1", "K3"])


def run_args(h: Harness, k: int, *extra: str, text: str = "line") -> list[str]:
    """K = 1: one speak task; K = 3: a batch of speak lines split over three instances."""
    if k == 1:
        return ["run", *extra, "--", "voice-synth", "speak", "--voice", "narrator", "--text", text]
    return ["run", "--shards", str(k), *extra, "--tasks", str(write_tasks(h, 6, text=text))]


# ---- the real console script ----------------------------------------------------------------


def test_success_with_the_real_cli(harness, tmp_path):
    """The console script users run, as a subprocess per call; also: secrets, and the pull's
    protection against symlinks planted on the instance."""
    h = harness(real_cli=True)
    secret = tmp_path / "local-secret.txt"
    secret.write_text("local only\n")
    tasks = h.tmp / "tasks.txt"
    tasks.write_text(
        shlex.join(SPEAK[1:]) + "\n"
        f"!ln -s {secret} /work/abs-link; ln -s ../../../.. /work/up-link; mkdir -p /work/d; "
        "echo fine > /work/d/real.txt; ln -s real.txt /work/d/inside-link\n"
    )
    proc = h.run("run", "--tasks", str(tasks))
    assert proc.returncode == 0, proc.stderr
    h.assert_all_gone()
    (create,) = h.creates()
    assert create["path"] == "/api/v0/asks/12/"  # the affordable offer, not the better but too dear one
    body = create["body"]
    label = body["label"]
    assert label.startswith("py-audio-box:job1:1of1:") and int(label.rsplit(":", 1)[1]) > time.time()
    assert body["disk"] == 60 and body["runtype"] == "ssh_direc ssh_proxy"
    # The price guard priced the offers with the disk the instance gets, on hosts that have it.
    assert h.fake.searches[0]["allocated_storage"] == 60
    assert h.fake.searches[0]["disk_space"] == {"gte": "60"}
    # The boot script carries the self-destruct, with the instance's own key, never the account's.
    assert "CONTAINER_API_KEY" in body["onstart"] and API_KEY not in body["onstart"]
    summary = h.summary()
    assert summary["exit_code"] == 0 and summary["instance_destroyed"] is True
    assert summary["offer"]["price_per_month"] == pytest.approx((0.23 + 0.15 * 60 / 720) * 730, abs=0.01)
    assert [t["status"] for t in summary["tasks"]] == ["ok", "ok"]
    assert shlex.split(summary["tasks"][0]["command"].split("./run-direct ", 1)[1]) == SPEAK[1:]
    work = h.run_dir / "job1" / "work"
    assert (work / "ran.txt").read_text().strip() == shlex.join(SPEAK[1:]).replace("'", "")
    # Pulled: what the instance made, but no symlink that leads out of the pulled tree.
    assert (work / "d" / "real.txt").read_text() == "fine\n"
    assert not (work / "abs-link").is_symlink() and not (work / "up-link").is_symlink()
    assert (work / "d" / "inside-link").resolve() == (work / "d" / "real.txt").resolve()
    for call in h.ssh_calls():
        joined = " ".join(call["argv"])
        assert "StrictHostKeyChecking=accept-new" in joined and "StrictHostKeyChecking=no" not in joined
    # The registry login reached the API through the vastai process; ssh and rsync saw no secret;
    # no log, summary or output holds one.
    assert body["image_login"] == f"-u someone -p {REGISTRY_TOKEN} ghcr.io" and create["auth"] == "account"
    assert all(c["secret_env"] == [] for c in h.ssh_calls())
    h.assert_no_secret_anywhere(proc)


# ---- exit paths, K = 1 and K = 3 ------------------------------------------------------------


def test_task_failure_destroys_and_reports(harness):
    h = harness()
    proc = h.run(*run_args(h, 1, text="FAIL"))
    assert proc.returncode == 1, proc.stderr
    h.assert_all_gone()
    summary = h.summary()
    assert summary["task_failures"] == 1 and summary["instance_destroyed"] is True


def closed_stderr_run(h: Harness, args: list[str]) -> subprocess.CompletedProcess:
    argv = shlex.join(h.argv(*args))
    return subprocess.run(["bash", "-c", f"exec 2>&-; exec {argv}"], env=h.env, timeout=90, cwd=h.tmp,
                          stdout=subprocess.PIPE, text=True)  # fmt: skip


def test_stderr_closed_and_destroy_failing_then_succeeding(harness):
    h = harness()
    h.fake.faults["destroy"] = ["500", "false", "429", "429", "429"]  # the CLI itself retries a 429 3 times
    proc = closed_stderr_run(h, run_args(h, 1))
    assert proc.returncode == 0
    h.assert_all_gone()
    assert len(h.deletes()) == 6  # until the API confirmed the instance gone
    assert h.summary()["instance_destroyed"] is True


def test_three_shards_stderr_closed_a_failing_shard_and_a_flaky_destroy(harness):
    """K = 3: every instance labelled with its shard, one rented per affordable offer; the shard
    whose task fails runs once more on a new instance; destroys fail twice before they take;
    stderr is closed all along. At the end every instance (four) is gone."""
    h = harness()
    tasks = h.tmp / "tasks.txt"
    tasks.write_text("".join(f"voice-synth speak --voice v{i} --text 'line {i}'\n" for i in range(5)))
    tasks.write_text(tasks.read_text() + "voice-synth speak --voice v9 --text 'FAILSHARD2 here'\n")
    h.fake.faults["destroy"] = ["500", "false"]
    proc = closed_stderr_run(h, ["run", "--shards", "3", "--tasks", str(tasks)])
    assert proc.returncode == 1
    h.assert_all_gone()
    creates = h.creates()
    assert len(creates) == 4
    assert sorted(c["body"]["label"].split(":")[2] for c in creates[:3]) == ["1of3", "2of3", "3of3"]
    assert sorted(c["path"] for c in creates[:3]) == [f"/api/v0/asks/{i}/" for i in (12, 13, 14)]
    shard_args = sorted(c.rsplit("--shard ", 1)[1] for c in h.task_commands())
    assert len(shard_args) == 4 and set(shard_args) == {"1/3", "2/3", "3/3"}
    summary = h.summary()
    assert summary["instance_destroyed"] is True and len(summary["instances"]) == 4
    assert [s["status"] for s in summary["shard_results"]] == ["ok", "failed", "ok"]


@SHARDS
def test_max_duration_kills_a_hung_task_pulls_and_destroys(harness, k):
    h = harness()
    started = time.monotonic()
    proc = h.run(*run_args(h, k, "--max-duration", "7", text="HANG"))
    assert time.monotonic() - started < 40
    assert proc.returncode == 4, proc.stderr
    assert "maximum duration" in proc.stderr
    h.assert_all_gone()
    if k == 1:  # what the hung task wrote was pulled (with K = 3 the deadline may fall before a task)
        assert (h.run_dir / "job1" / "work" / "ran.txt").exists()


@pytest.mark.parametrize(
    "k,signum",
    [(k, signum) for k in (1, 3) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)],
    ids=[f"{name}-K{k}" for k in (1, 3) for name in ("INT", "TERM", "HUP")],
)
def test_signal_during_task_destroys(harness, k, signum):
    h = harness()
    proc = h.start(*run_args(h, k, text="HANG"))
    h.wait_for_task(proc, n=k)
    os.killpg(proc.pid, signum)  # like the terminal: the whole group, ssh included
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    h.assert_all_gone()
    summary = h.summary()
    assert summary["instance_destroyed"] is True and "interrupted" in summary["reason"]


@SHARDS
def test_stderr_broken_pipe_and_ctrl_c_still_destroys(harness, k):
    """`vast.sh run ... 2>&1 | tee log`, then Ctrl-C: tee dies first, stderr becomes a broken pipe."""
    h = harness()
    proc = h.start(*run_args(h, k, text="HANG"))
    h.wait_for_task(proc, n=k)
    proc.stderr.close()  # the reader is gone: every write to stderr now fails with EPIPE
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT
    h.assert_all_gone()
    summary = h.summary()
    assert summary["instance_destroyed"] is True
    assert "destroyed instance" in (h.run_dir / "job1" / "deploy.log").read_text()


@SHARDS
def test_destroy_failing_always_reports_every_instance(harness, k):
    h = harness()
    h.fake.faults["destroy"] = ["500*"]
    proc = h.run(*run_args(h, k))
    assert proc.returncode == 5
    alive = sorted(i["id"] for i in h.fake.alive())
    assert len(alive) == k
    assert "COULD NOT DESTROY instance(s) " + " ".join(map(str, alive)) in proc.stderr
    assert h.summary()["not_destroyed"] == alive and h.summary()["instance_destroyed"] is False


@SHARDS
def test_kill_9_then_reap(harness, k):
    h = harness()
    proc = h.start(*run_args(h, k, text="HANG"))
    try:
        h.wait_for_task(proc, n=k)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert len(h.fake.alive()) == k  # what a killed controller leaves billing
        status = h.tool("status")
        assert status.stdout.count("ORPHAN") == k
        dry = h.tool("reap", "--dry-run")
        assert dry.returncode == 0 and dry.stdout.count("would destroy") == k and len(h.fake.alive()) == k
        reap = h.tool("reap")
        assert reap.returncode == 0, reap.stderr
        assert h.fake.alive() == []
    finally:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)  # the orphaned ssh of the hung task


def test_self_destruct_uses_the_instance_key_and_falls_back_to_stop(harness):
    """The boot script a run gives each instance, run on a fake host with the environment vast.ai
    gives containers: at the deadline it destroys its own instance with CONTAINER_API_KEY."""
    from audiobox.cloud.remote import onstart_script

    h = harness()
    first = h.fake.add_instance("py-audio-box:a:1of1:h:1", onstart=onstart_script(int(time.time()) + 1))
    (h.fake.host_root(first) / "work" / "out.txt").write_text("x")
    deadline = time.monotonic() + 20
    while h.fake.alive():
        assert time.monotonic() < deadline, "the instance did not destroy itself"
        time.sleep(0.2)
    # One DELETE with the instance's own key; the container went away with it.
    assert [(c["method"], c["auth"]) for c in h.fake.calls] == [("DELETE", "instance")]
    # When the API refuses its destroy, it stops the instance: no GPU billing until the reaper.
    h.fake.faults["destroy"] = ["500*"]
    second = h.fake.add_instance(
        "py-audio-box:b:1of1:h:1", onstart=onstart_script(int(time.time()), backoff_s=0.05)
    )
    deadline = time.monotonic() + 20
    while h.fake.alive()[0]["actual_status"] != "stopped":
        assert time.monotonic() < deadline, "the instance did not stop itself"
        time.sleep(0.2)
    assert h.fake.alive()[0]["id"] == second


# ---- guard rails ------------------------------------------------------------------------------


def test_price_guard_refuses_before_creating(harness):
    h = harness()
    h.env["VAST_MAX_MONTHLY_PRICE"] = "100"
    proc = h.run(*run_args(h, 1))
    assert proc.returncode == 3 and "price guard" in proc.stderr
    assert not h.creates()


def test_offers_without_a_price_are_skipped_not_free(harness):
    h = harness()
    h.fake.offers = [{"id": 21, "gpu_name": "X", "dlperf_per_dphtotal": 999.0}, *h.fake.offers]
    proc = h.run(*run_args(h, 1))
    assert proc.returncode == 0, proc.stderr
    assert [c["path"] for c in h.creates()] == ["/api/v0/asks/12/"]
    assert "without a price" in proc.stderr
    h.fake.offers = [{"id": 21, "gpu_name": "X", "dph_total": None}]
    proc = h.run(*run_args(h, 1), job="job2")
    assert proc.returncode == 3 and "states its price" in proc.stderr


def test_too_few_affordable_offers_for_the_shards(harness):
    h = harness()
    h.env["VAST_MAX_MONTHLY_PRICE"] = "150"  # two offers fit, three shards asked
    proc = h.run(*run_args(h, 3))
    assert proc.returncode == 3 and "for 3 instance(s)" in proc.stderr
    assert not h.creates()


def test_lock_refuses_a_second_run(harness):
    h = harness()
    with open(h.lock, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = h.run(*run_args(h, 1))
    assert proc.returncode == 3 and "refusing to provision" in proc.stderr
    assert not h.creates()


def test_sweep_at_start_destroys_this_machines_orphans_only(harness):
    h = harness()
    from audiobox.cloud.vastapi import Label, this_host

    mine_old = h.fake.add_instance(str(Label("old", 1, 1, this_host(), int(time.time()) + 3600)))
    expired_elsewhere = h.fake.add_instance(str(Label("x", 1, 1, "other-machine", int(time.time()) - 10)))
    live_elsewhere = h.fake.add_instance(str(Label("y", 1, 1, "other-machine", int(time.time()) + 3600)))
    kept = h.fake.add_instance(str(Label("z", 1, 1, this_host(), None)))
    foreign = h.fake.add_instance("someone-elses-training")
    proc = h.run(*run_args(h, 1))
    assert proc.returncode == 0, proc.stderr
    alive = {i["id"] for i in h.fake.alive()}
    assert alive == {live_elsewhere, kept, foreign}
    swept = {e["id"] for e in h.summary()["sweep_at_start"]}
    assert swept == {mine_old, expired_elsewhere}


def test_keep_keeps_the_instance_without_a_self_destruct(harness):
    h = harness()
    proc = h.run(*run_args(h, 1, "--keep"))
    assert proc.returncode == 0, proc.stderr
    (inst,) = h.fake.alive()
    assert inst["label"].endswith(":keep") and "pab-self-destruct" not in inst["onstart"]
    assert h.summary()["instance_destroyed"] is False and "BILLS" in proc.stderr
    assert "kept with --keep" in h.tool("reap").stdout and h.fake.alive()
    assert h.tool("reap", "--include-kept").returncode == 0 and h.fake.alive() == []


def test_task_file_quoting_batching_and_push_cache(harness):
    h = harness()
    voices = h.tmp / "voices"
    (voices / "narrator").mkdir(parents=True)
    (voices / "narrator" / "voice.json").write_text("{}")
    tasks = h.tmp / "tasks.txt"
    tasks.write_text(
        "# comment and blank lines are skipped\n\n"
        "voice-synth speak --voice narrator --text \"It's a long way, isn't it?\"\n"
        "voice-synth speak --speaker Ryan --text 'Second line' --language English\n"
        "voice-clone synth --ref-audio '/work/my ref.wav' --text \"two words\" --voice-name x\n"
        "voice-synth speak --voice narrator --text 'alone' --seed 3\n"
        "!nvidia-smi -L || true\n"
    )
    proc = h.run("run", "--push-cache", str(voices), "--tasks", str(tasks))
    assert proc.returncode == 0, proc.stderr
    cmds = [c["command"] for c in h.summary()["tasks"]]
    assert len(cmds) == 4
    assert shlex.split(cmds[0].split("./run-direct ", 1)[1]) == [
        "voice-synth", "batch", "/work/.vast-batches/batch-000.jsonl",
    ]  # fmt: skip
    items = [
        json.loads(x) for x in (h.run_dir / "job1" / "batches" / "batch-000.jsonl").read_text().splitlines()
    ]
    assert items == [
        {"voice": "narrator", "text": "It's a long way, isn't it?"},
        {"speaker": "Ryan", "text": "Second line", "language": "English"},
    ]
    assert shlex.split(cmds[1].split("./run-direct ", 1)[1]) == [
        "voice-clone", "synth", "--ref-audio", "/work/my ref.wav", "--text", "two words", "--voice-name", "x",
    ]  # fmt: skip
    assert shlex.split(cmds[2].split("./run-direct ", 1)[1])[-2:] == ["--seed", "3"]
    assert cmds[3] == "nvidia-smi -L || true"
    # The registry reached the instance's /cache, and the batch file its /work.
    pulled = h.run_dir / "job1" / "work"
    assert (pulled / ".vast-batches" / "batch-000.jsonl").exists()
    h.assert_all_gone()


def test_unknown_app_and_unsplittable_lines_are_refused_before_provisioning(harness):
    h = harness()
    proc = h.run("run", "--", "no-such-app", "--x")
    assert proc.returncode == 2 and "unknown app" in proc.stderr
    tasks = h.tmp / "t.txt"
    tasks.write_text("voice-clone synth --text x --voice-name y\n")
    proc = h.run("run", "--shards", "2", "--tasks", str(tasks))
    assert proc.returncode == 2 and "cannot split" in proc.stderr
    assert h.fake.calls == []


def test_status_destroy_and_search_commands(harness):
    h = harness()
    ours = h.fake.add_instance("py-audio-box:j:1of1:elsewhere:9999999999")
    other = h.fake.add_instance("other")
    proc = h.tool("status")
    assert proc.returncode == 0 and "py-audio-box:j" in proc.stdout and "other" not in proc.stdout
    proc = h.tool("destroy", str(ours))
    assert proc.returncode == 0, proc.stderr
    assert {i["id"] for i in h.fake.alive()} == {other}
    proc = h.tool("search")
    assert proc.returncode == 0 and "RTX 3090" in proc.stdout
    assert h.fake.searches[-1]["allocated_storage"] == 60


def test_the_pull_after_a_timeout_ends_well_before_the_self_destruct(tmp_path):
    """After the deadline, a pull may use half the teardown grace at most (and never an hour):
    the destroy, then the instance's own self-destruct, come after it."""
    from audiobox.cloud.run import Deployment, RunOptions
    from audiobox.cloud.vastapi import Log

    opts = RunOptions(
        repo=tmp_path, job="j", tasks=[], image="x", run_dir=tmp_path, max_duration_s=10, teardown_grace_s=100
    )
    run = Deployment(opts, vast=None, log=Log())
    assert 55 < run._teardown_budget() <= 60
    assert run.self_destruct_at - time.time() == pytest.approx(110, abs=2)
    run.deadline -= 50  # the deadline passed 40 s ago: 10 s of the grace's first half remain
    assert 5 < run._teardown_budget() <= 10
    run.deadline -= 20
    assert run._teardown_budget() == 0


def test_the_log_shows_lines_through_the_apps_terminal_and_never_raises(tmp_path, monkeypatch):
    """cloud.vastapi.Log writes no terminal itself: the app passes one (scripts/vast.sh: stderr). A
    terminal that fails (stderr gone) is dropped; the file keeps every line, secrets masked."""
    from audiobox.cloud.vastapi import Log

    monkeypatch.setenv("VAST_API_KEY", "sekret-key")
    shown = []

    def gone_after_one(line: str) -> None:
        if shown:
            raise BrokenPipeError("reader gone")
        shown.append(line)

    log = Log(tmp_path / "deploy.log", terminal=gone_after_one)
    log("first sekret-key")
    log("second")
    log("third")
    assert shown == ["[vast] first ***"] and log.terminal is None
    lines = (tmp_path / "deploy.log").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["[vast] first ***", "[vast] second", "[vast] third"]
