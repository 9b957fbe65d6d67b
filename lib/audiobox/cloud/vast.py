"""vast.ai runs that never leave an instance billing.

`scripts/vast.sh` (and the `make vast-*` targets) call `main()`. Sub-commands:

    search                      offers, best DLPerf per dollar first
    run [opts] [-- APP ARGS...] provision, run tasks, pull /work back, destroy
    shell [opts]                provision and open a shell; destroyed when the shell exits
    status                      this tool's instances (found by label) and the local lock
    destroy ID                  destroy one instance

`run` lifecycle: lock (one run per machine) -> refuse if an instance labelled by this tool is
alive (other instances on the account are left alone) -> search -> price guard
(VAST_MAX_MONTHLY_PRICE) -> create -> wait until running -> wait until SSH answers -> sync code ->
push the voice registry -> tasks -> pull /work -> summary JSON -> destroy. The destroy sits in a
`finally` that also runs on task failure, timeouts, SIGINT, SIGTERM and SIGHUP; only `--keep`
skips it. Secrets never go on a command line: the vastai CLI reads VAST_API_KEY from its
environment, and the registry login reaches it through the environment of a small launcher that
adds `--login` inside the vastai process (see `_LOGIN_LAUNCHER`). Everything is driven through
the official `vastai` CLI, `ssh` and `rsync`, so tests can replace the three with stand-ins.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import errno
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

LABEL_PREFIX = "py-audio-box"
DEFAULT_QUERY = "reliability > 0.98 gpu_ram >= 20 compute_cap >= 800 compute_cap < 1200"
DEFAULT_ORDER = "dlperf_per_dphtotal-"
HOURS_PER_MONTH = 730
DEFAULT_MAX_MONTHLY_PRICE = 250.0
SECRET_ENV_VARS = ("VAST_API_KEY", "VAST_REGISTRY_TOKEN")
REMOTE_APP_DIR = "/app"
REMOTE_WORK_DIR = "/work"
REMOTE_CACHE_DIR = "/cache"
# SSH sessions on vast.ai do not see the image's ENV lines, so every remote command sets them.
REMOTE_ENV = (
    "export PATH=/opt/venv/bin:$PATH AUDIOBOX_CACHE=/cache AUDIOBOX_WORK=/work XDG_CACHE_HOME=/cache"
    " HF_HOME=/cache/huggingface TORCH_HOME=/cache/torch HF_HUB_DISABLE_XET_TRANSPORT=1"
)
# Flags of `voice-synth speak` that map onto fields of a `voice-synth batch` item (JSON Lines).
# A speak line with any other flag runs on its own.
BATCH_ITEM_FLAGS = {
    "--voice": "voice",
    "--speaker": "speaker",
    "--text": "text",
    "--language": "language",
    "--tone": "tone",
    "--profile": "profile",
    "--variants": "variants",
    "--instruct": "instruct",
}

# Runs the vastai CLI script in-process with `--login` appended to its argv. The login (which
# holds the registry token) comes from this launcher's environment, so it appears on no command
# line (`ps`, /proc/PID/cmdline) and in no log.
_LOGIN_LAUNCHER = (
    "import os, runpy, sys\n"
    "exe = sys.argv[1]\n"
    "login = os.environ.pop('PAB_VAST_LOGIN')\n"
    "sys.argv = [exe] + sys.argv[2:] + ['--login', login]\n"
    "runpy.run_path(exe, run_name='__main__')\n"
)

EXIT_OK, EXIT_TASKS_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_PROVISION = 0, 1, 2, 3, 4
EXIT_SIGNAL_BASE = 128


class DeployError(Exception):
    """A failure with one clear line for the user and the process exit code to use."""

    def __init__(self, message: str, exit_code: int = EXIT_PROVISION):
        super().__init__(message)
        self.exit_code = exit_code


class Interrupted(BaseException):
    """Raised from the signal handler so every `finally` (the destroy) still runs."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# --------------------------------------------------------------------------------------------
# Logging with secret redaction
# --------------------------------------------------------------------------------------------


class Log:
    """Prints progress to stderr and appends it to the run's log file, with secrets masked."""

    def __init__(self, path: Path | None = None):
        self.path = path
        self.secrets = [v for k in SECRET_ENV_VARS if (v := os.environ.get(k, "")) and len(v) >= 4]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def __call__(self, message: str) -> None:
        line = self.redact(f"[vast] {message}")
        print(line, file=sys.stderr, flush=True)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(f"{_now()} {line}\n")


def child_env(*, keep_api_key: bool = False) -> dict[str, str]:
    """The environment for a child process, without the secrets it does not need."""
    env = dict(os.environ)
    for name in SECRET_ENV_VARS:
        if not (keep_api_key and name == "VAST_API_KEY" and env.get(name)):
            env.pop(name, None)  # an empty VAST_API_KEY would hide the CLI's saved key file
    return env


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# vastai CLI wrapper
# --------------------------------------------------------------------------------------------


class VastCli:
    """The official `vastai` CLI (PyPI `vastai`), called with --raw and parsed as JSON."""

    def __init__(self, log: Log, executable: str | None = None):
        self.log = log
        name = executable or os.environ.get("VASTAI_BIN", "vastai")
        found = shutil.which(name)
        if not found:
            raise DeployError(
                f"'{name}' not found: install the cloud extra (pip install -e '.[cloud]') or set VASTAI_BIN",
                EXIT_USAGE,
            )
        self.executable = found

    def _run(self, args: Sequence[str], *, login: str | None = None, timeout: float = 120) -> str:
        argv = [self.executable, *args]
        env = child_env(keep_api_key=True)  # vastai reads VAST_API_KEY from its environment
        if login is not None:
            argv = [*self._interpreter(), "-c", _LOGIN_LAUNCHER, self.executable, *args]
            env["PAB_VAST_LOGIN"] = login
        self.log(f"$ vastai {shlex.join(args)}")
        try:
            # Own session: a Ctrl-C at the terminal reaches this tool (which then destroys) but not
            # the vastai call doing the destroy.
            proc = subprocess.run(
                argv,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            raise DeployError(
                f"vastai {args[0]} {args[1] if len(args) > 1 else ''} timed out after {timeout:.0f}s"
            ) from exc
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise DeployError(
                f"vastai {' '.join(args[:2])} failed: {self.log.redact(detail[-1] if detail else '')}"
            )
        return proc.stdout

    def _interpreter(self) -> list[str]:
        with open(self.executable, "rb") as fh:
            first = fh.readline().decode("utf-8", "replace").strip()
        if not first.startswith("#!") or "python" not in first:
            raise DeployError(
                "a registry login needs the Python vastai CLI (its script is run in-process); "
                f"{self.executable} is not one",
                EXIT_USAGE,
            )
        return shlex.split(first[2:])

    def _json(self, args: Sequence[str], **kw: Any) -> Any:
        out = self._run([*args, "--raw"], **kw)
        try:
            return json.loads(out)
        except json.JSONDecodeError as exc:
            raise DeployError(
                f"vastai {' '.join(args[:2])} did not return JSON: {out.strip()[:200]}"
            ) from exc

    def search_offers(self, query: str, order: str = DEFAULT_ORDER) -> list[dict]:
        rows = self._json(["search", "offers", query, "--order", order])
        return rows if isinstance(rows, list) else rows.get("offers", [])

    def show_instances(self) -> list[dict]:
        rows = self._json(["show", "instances"])
        return rows if isinstance(rows, list) else rows.get("instances", [])

    def show_instance(self, instance_id: int) -> dict:
        row = self._json(["show", "instance", str(instance_id)])
        return row.get("instances", row) if isinstance(row, dict) else {}

    def create_instance(
        self, offer_id: int, *, image: str, disk_gb: int, label: str, onstart: str, login: str | None
    ) -> int:
        args = [
            "create",
            "instance",
            str(offer_id),
            "--image",
            image,
            "--disk",
            str(disk_gb),
            "--label",
            label,
            "--ssh",
            "--direct",
            "--cancel-unavail",
            "--onstart-cmd",
            onstart,
        ]
        reply = self._json(args, login=login)
        instance_id = reply.get("new_contract") if isinstance(reply, dict) else None
        if not instance_id:
            raise DeployError(f"vastai create instance returned no instance id: {reply}")
        return int(instance_id)

    def destroy_instance(self, instance_id: int) -> None:
        self._run(["destroy", "instance", str(instance_id), "-y"])

    def ssh_endpoint(self, instance_id: int) -> tuple[str, int]:
        out = self._run(["ssh-url", str(instance_id)]).strip()
        if out.startswith("ssh://") and "@" in out:
            host_port = out.split("@", 1)[1].rstrip("/")
            host, _, port = host_port.rpartition(":")
            if host and port.isdigit():
                return host, int(port)
        raise DeployError(f"no SSH endpoint for instance {instance_id} yet: {out[:200]}")


def own_instances(instances: list[dict]) -> list[dict]:
    """This tool's instances (by label); the account's other instances are none of our business."""
    return [i for i in instances if str(i.get("label") or "").startswith(LABEL_PREFIX)]


def monthly_price(offer: dict) -> float:
    per_hour = offer.get("dph_total_adj") or offer.get("dph_total") or 0.0
    return float(per_hour) * HOURS_PER_MONTH


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Task:
    """One unit of remote work. `argv` is an app invocation; `shell` a raw command (`!` lines);
    `batch_items` turns consecutive `voice-synth speak` lines into one `voice-synth batch` run."""

    index: int
    argv: list[str] = dataclasses.field(default_factory=list)
    shell: str | None = None
    source_lines: list[str] = dataclasses.field(default_factory=list)
    batch_items: list[dict] | None = None

    @property
    def mode(self) -> str:
        return "shell" if self.shell is not None else ("batch" if self.batch_items else "app")


def parse_task_line(line: str) -> list[str] | str | None:
    """A tasks-file line: None for blank/comment, a str for `!raw shell`, else the argv (shell quoting kept)."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    if stripped.startswith("!"):
        return stripped[1:].strip()
    try:
        return shlex.split(stripped)
    except ValueError as exc:
        raise DeployError(f"cannot parse task line {stripped!r}: {exc}", EXIT_USAGE) from exc


def speak_batch_item(argv: list[str]) -> dict | None:
    """The batch item for a `voice-synth speak` argv, or None when it needs its own process."""
    if len(argv) < 2 or argv[0] != "voice-synth" or argv[1] != "speak":
        return None
    item: dict[str, Any] = {}
    rest = argv[2:]
    i = 0
    while i < len(rest):
        flag, value = rest[i], None
        if "=" in flag and flag.startswith("--"):
            flag, value = flag.split("=", 1)
            i += 1
        elif i + 1 < len(rest):
            value = rest[i + 1]
            i += 2
        else:
            return None
        key = BATCH_ITEM_FLAGS.get(flag)
        if key is None or key in item:
            return None
        if key == "variants":
            if not value.isdigit():
                return None
            item[key] = int(value)
        else:
            item[key] = value
    if "text" not in item or ("voice" in item) == ("speaker" in item):
        return None
    return item


def build_tasks(entries: list[list[str] | str], app_names: set[str], *, batch: bool = True) -> list[Task]:
    """Validates the app names before anything is provisioned and groups speak lines into batches."""
    tasks: list[Task] = []
    pending: list[tuple[list[str], dict]] = []

    def flush() -> None:
        if len(pending) >= 2:
            tasks.append(
                Task(
                    index=len(tasks),
                    argv=["voice-synth", "batch"],
                    source_lines=[shlex.join(a) for a, _ in pending],
                    batch_items=[it for _, it in pending],
                )
            )
        else:
            for a, _ in pending:
                tasks.append(Task(index=len(tasks), argv=a, source_lines=[shlex.join(a)]))
        pending.clear()

    for entry in entries:
        if isinstance(entry, str):
            flush()
            tasks.append(Task(index=len(tasks), shell=entry, source_lines=["!" + entry]))
            continue
        if not entry or entry[0] not in app_names:
            known = ", ".join(sorted(app_names)) or "(none found)"
            raise DeployError(f"unknown app in task {shlex.join(entry)!r}; apps: {known}", EXIT_USAGE)
        item = speak_batch_item(entry) if batch else None
        if item is not None:
            pending.append((entry, item))
            continue
        flush()
        tasks.append(Task(index=len(tasks), argv=entry, source_lines=[shlex.join(entry)]))
    flush()
    return tasks


def list_apps(repo: Path) -> set[str]:
    apps = repo / "apps"
    return {p.name for p in apps.iterdir() if (p / f"{p.name}.py").is_file()} if apps.is_dir() else set()


# --------------------------------------------------------------------------------------------
# SSH / rsync
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Remote:
    host: str
    port: int
    known_hosts: Path
    key: str | None = None
    user: str = "root"

    def ssh_base(self) -> list[str]:
        # accept-new: the first key seen for this run's instance is recorded in a per-run
        # known_hosts; a changed key afterwards is refused (never StrictHostKeyChecking=no).
        argv = [
            "ssh",
            "-p",
            str(self.port),
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ServerAliveInterval=30",
            "-o",
            "ServerAliveCountMax=4",
        ]
        if self.key:
            argv += ["-i", self.key, "-o", "IdentitiesOnly=yes"]
        return argv

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}"

    def ssh(self, command: str, *, tty: bool = False) -> list[str]:
        return [*self.ssh_base(), *(["-t"] if tty else ["-T"]), self.target, command]

    def rsync(self, *srcs_and_dst: str, delete: bool = False) -> list[str]:
        argv = ["rsync", "-az", "--partial", "-e", shlex.join(self.ssh_base())]
        if delete:
            argv.append("--delete")
        return [*argv, *srcs_and_dst]


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class RunOptions:
    repo: Path
    job: str
    tasks: list[Task]
    image: str
    query: str = DEFAULT_QUERY
    disk_gb: int = 60
    max_monthly_price: float = DEFAULT_MAX_MONTHLY_PRICE
    keep: bool = False
    shell: bool = False
    push_cache: list[str] = dataclasses.field(default_factory=list)
    pull: bool = True
    sync_code: bool = True
    fail_fast: bool = False
    ssh_key: str | None = None
    lock_path: Path = Path("~/.cache/py-audio-box/vast-run.lock")
    run_dir: Path = Path("work_remote")
    summary_json: Path | None = None
    wait_running_s: float = 1200
    wait_ssh_s: float = 360
    poll_s: float = 5
    max_duration_s: float | None = None
    registry_login: str | None = None


@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """One provisioning run per machine. flock is released by the kernel when the process dies,
    so a crashed run never leaves a stale lock behind."""
    import fcntl

    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                fh.seek(0)
                holder = fh.read().strip() or "another run"
                raise DeployError(
                    f"another vast run holds {path} ({holder}); refusing to provision a second instance",
                    EXIT_REFUSED,
                ) from exc
            raise
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {_now()}\n")
        fh.flush()
        yield
    finally:
        fh.close()


class SignalGuard:
    """SIGINT/SIGTERM/SIGHUP raise Interrupted, so the destroy in `finally` runs. Once the cleanup
    starts (`defer()`), further signals are only noted: a second Ctrl-C cannot abort the destroy."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, log: Log):
        self.log = log
        self.deferring = False
        self.caught: list[int] = []
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, _frame: Any) -> None:
        if self.deferring:
            self.caught.append(signum)
            self.log(f"{signal.Signals(signum).name} received: finishing the cleanup first")
            return
        raise Interrupted(signum)

    def __enter__(self) -> SignalGuard:
        self._previous = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        return self

    def defer(self) -> None:
        self.deferring = True

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)


class Deployment:
    def __init__(self, opts: RunOptions, vast: VastCli, log: Log):
        self.opts = opts
        self.vast = vast
        self.log = log
        self.label = f"{LABEL_PREFIX}:{opts.job}"
        self.run_dir = opts.run_dir / opts.job
        self.instance_id: int | None = None
        self.create_attempted = False
        self.remote: Remote | None = None
        self.offer: dict | None = None
        self.deadline = time.monotonic() + opts.max_duration_s if opts.max_duration_s else None
        self.results: list[dict] = []
        self.summary: dict[str, Any] = {
            "job": opts.job,
            "label": self.label,
            "image": opts.image,
            "query": opts.query,
            "started_at": _now(),
            "keep": opts.keep,
            "tasks": self.results,
        }

    # -- helpers ------------------------------------------------------------------------------

    def _remaining(self, limit: float | None = None) -> float | None:
        if self.deadline is None:
            return limit
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeployError(f"run exceeded its maximum duration ({self.opts.max_duration_s:.0f}s)")
        return left if limit is None else min(left, limit)

    def _call(self, argv: list[str], *, timeout: float | None = None, what: str) -> int:
        self.log(f"$ {self.log.redact(shlex.join(argv))}")
        try:
            return subprocess.run(
                argv, timeout=self._remaining(timeout), stdin=subprocess.DEVNULL, env=child_env()
            ).returncode
        except subprocess.TimeoutExpired:
            self.log(f"{what} timed out")
            if self.deadline is not None and time.monotonic() >= self.deadline:
                raise DeployError(
                    f"run exceeded its maximum duration ({self.opts.max_duration_s:.0f}s)"
                ) from None
            return 124

    # -- lifecycle ----------------------------------------------------------------------------

    def preflight(self) -> None:
        alive = [
            i
            for i in own_instances(self.vast.show_instances())
            if str(i.get("actual_status") or i.get("cur_state") or "") not in ("destroyed", "deleted")
        ]
        if alive:
            ids = ", ".join(f"{i.get('id')} ({i.get('label')}, {i.get('actual_status')})" for i in alive)
            raise DeployError(
                f"an instance of this tool is already alive: {ids}. "
                "Wait for it, or `make vast-destroy ID=...`.",
                EXIT_REFUSED,
            )

    def choose_offer(self) -> dict:
        offers = self.vast.search_offers(self.opts.query)
        if not offers:
            raise DeployError(f"no offer matches {self.opts.query!r}", EXIT_REFUSED)
        affordable = [o for o in offers if monthly_price(o) <= self.opts.max_monthly_price]
        if not affordable:
            cheapest = min(offers, key=monthly_price)
            raise DeployError(
                f"price guard: the cheapest matching offer costs ${monthly_price(cheapest):.0f}/month "
                f"(${monthly_price(cheapest) / HOURS_PER_MONTH:.3f}/h), over VAST_MAX_MONTHLY_PRICE="
                f"{self.opts.max_monthly_price:.0f}",
                EXIT_REFUSED,
            )
        offer = affordable[0]
        self.offer = offer
        per_hour = monthly_price(offer) / HOURS_PER_MONTH
        self.summary["offer"] = {
            "id": offer.get("id"),
            "gpu": offer.get("gpu_name"),
            "num_gpus": offer.get("num_gpus"),
            "gpu_ram_gb": round(float(offer.get("gpu_ram") or 0) / 1024, 1),
            "compute_cap": offer.get("compute_cap"),
            "dlperf_per_dphtotal": offer.get("dlperf_per_dphtotal"),
            "price_per_hour": round(per_hour, 4),
            "price_per_month": round(per_hour * HOURS_PER_MONTH, 2),
        }
        self.log(
            f"offer {offer.get('id')}: {offer.get('num_gpus', 1)}x {offer.get('gpu_name')} "
            f"${per_hour:.3f}/h (${per_hour * 24:.2f}/day, ${per_hour * HOURS_PER_MONTH:.0f}/month)"
        )
        return offer

    def create(self, offer: dict) -> None:
        onstart = f"mkdir -p {REMOTE_WORK_DIR} {REMOTE_CACHE_DIR}; touch /root/.no_auto_tmux"
        self.create_attempted = True
        self.instance_id = self.vast.create_instance(
            int(offer["id"]),
            image=self.opts.image,
            disk_gb=self.opts.disk_gb,
            label=self.label,
            onstart=onstart,
            login=self.opts.registry_login,
        )
        self.summary["instance_id"] = self.instance_id
        # Written at once, so even a killed run leaves the id behind for `make vast-destroy`.
        (self.run_dir / "instance_id").write_text(f"{self.instance_id}\n", encoding="utf-8")
        self.log(f"created instance {self.instance_id} (label {self.label})")

    def wait_running(self) -> None:
        assert self.instance_id is not None
        limit = time.monotonic() + self.opts.wait_running_s
        last = None
        while True:
            info = self.vast.show_instance(self.instance_id)
            status = str(info.get("actual_status") or "")
            if status != last:
                self.log(
                    f"instance {self.instance_id}: {status or 'pending'} {info.get('status_msg') or ''}".rstrip()
                )
                last = status
            if status == "running":
                return
            if status in ("exited", "error", "offline", "destroyed", "deleted"):
                raise DeployError(
                    f"instance {self.instance_id} went to '{status}': {info.get('status_msg') or ''}"
                )
            if time.monotonic() >= limit:
                raise DeployError(
                    f"instance {self.instance_id} not running after {self.opts.wait_running_s:.0f}s "
                    f"(last status '{status or 'pending'}')"
                )
            self._remaining()
            time.sleep(self.opts.poll_s)

    def wait_ssh(self) -> None:
        assert self.instance_id is not None
        limit = time.monotonic() + self.opts.wait_ssh_s
        while True:
            try:
                host, port = self.vast.ssh_endpoint(self.instance_id)
                self.remote = Remote(host, port, self.run_dir / "known_hosts", key=self.opts.ssh_key)
                rc = self._call(self.remote.ssh("true"), timeout=30, what="ssh probe")
                if rc == 0:
                    self.summary.update(host=host, port=port)
                    self.log(f"ssh ready: {host}:{port}")
                    return
            except DeployError as exc:
                if "maximum duration" in str(exc):
                    raise
                self.log(str(exc))
            if time.monotonic() >= limit:
                raise DeployError(
                    f"instance {self.instance_id} not reachable over SSH after {self.opts.wait_ssh_s:.0f}s"
                )
            time.sleep(self.opts.poll_s)

    def upload(self) -> None:
        remote = self.remote
        assert remote is not None
        if self.opts.sync_code:
            # The checkout's code, over the image's: what runs is what you have, without a git
            # fetch of unpinned code at boot. Dependencies come from the image.
            srcs = [
                str(self.opts.repo / p)
                for p in ("apps", "lib", "run-direct")
                if (self.opts.repo / p).exists()
            ]
            rc = self._call(
                remote.rsync(*srcs, f"{remote.target}:{REMOTE_APP_DIR}/", delete=True),
                timeout=600,
                what="code sync",
            )
            if rc != 0:
                raise DeployError(f"code sync failed (rsync exit {rc})")
        for path in self.opts.push_cache:
            local = Path(path)
            if not local.exists():
                raise DeployError(f"--push-cache {path}: no such file or folder", EXIT_USAGE)
            dest = f"{remote.target}:{REMOTE_CACHE_DIR}/{local.name}" + ("/" if local.is_dir() else "")
            src = str(local) + ("/" if local.is_dir() else "")
            rc = self._call(remote.rsync(src, dest), timeout=1800, what="cache push")
            if rc != 0:
                raise DeployError(f"pushing {path} failed (rsync exit {rc})")
        batches = [t for t in self.opts.tasks if t.batch_items]
        if batches:
            local_dir = self.run_dir / "batches"
            local_dir.mkdir(parents=True, exist_ok=True)
            for task in batches:
                path = local_dir / f"batch-{task.index:03d}.jsonl"
                path.write_text(
                    "".join(json.dumps(it, ensure_ascii=False) + "\n" for it in task.batch_items or []),
                    encoding="utf-8",
                )
                task.argv = ["voice-synth", "batch", f"{REMOTE_WORK_DIR}/.vast-batches/{path.name}"]
            rc = self._call(
                remote.rsync(str(local_dir) + "/", f"{remote.target}:{REMOTE_WORK_DIR}/.vast-batches/"),
                timeout=300,
                what="batch upload",
            )
            if rc != 0:
                raise DeployError(f"uploading batch files failed (rsync exit {rc})")

    def remote_command(self, task: Task) -> str:
        body = task.shell if task.shell is not None else "./run-direct " + shlex.join(task.argv)
        return f"{REMOTE_ENV}; cd {REMOTE_APP_DIR} && {body}"

    def run_tasks(self) -> int:
        remote = self.remote
        assert remote is not None
        failures = 0
        for task in self.opts.tasks:
            shown = task.shell if task.shell is not None else shlex.join(task.argv)
            self.log(f"task {task.index + 1}/{len(self.opts.tasks)} ({task.mode}): {shown}")
            started = time.monotonic()
            record = {
                "index": task.index,
                "mode": task.mode,
                "lines": task.source_lines,
                "command": shown,
                "exit_code": None,
                "status": "running",
            }
            self.results.append(record)
            rc = self._call(remote.ssh(self.remote_command(task)), what=f"task {task.index + 1}")
            record.update(
                exit_code=rc,
                status="ok" if rc == 0 else "failed",
                seconds=round(time.monotonic() - started, 2),
            )
            if rc != 0:
                failures += 1
                self.log(f"task {task.index + 1} failed (exit {rc})")
                if self.opts.fail_fast:
                    break
        return failures

    def pull(self) -> None:
        remote = self.remote
        if remote is None or not self.opts.pull:
            return
        dest = self.run_dir / "work"
        dest.mkdir(parents=True, exist_ok=True)
        rc = self._call(
            remote.rsync(f"{remote.target}:{REMOTE_WORK_DIR}/", str(dest) + "/"), timeout=3600, what="pull"
        )
        self.summary["pulled_to"] = str(dest) if rc == 0 else None
        if rc != 0:
            self.log(f"pulling /work failed (rsync exit {rc})")

    def destroy(self) -> bool:
        """Destroys our instance; retried, because a leaked instance bills until someone notices."""
        if self.instance_id is None and self.create_attempted:
            # Interrupted inside `create`: the instance may exist without our knowing its id.
            with contextlib.suppress(DeployError):
                mine = [i for i in self.vast.show_instances() if i.get("label") == self.label]
                if mine:
                    self.instance_id = int(mine[0]["id"])
        if self.instance_id is None:
            return True
        for attempt in range(1, 4):
            try:
                self.vast.destroy_instance(self.instance_id)
                self.log(f"destroyed instance {self.instance_id}")
                return True
            except DeployError as exc:
                self.log(f"destroy attempt {attempt} failed: {exc}")
                time.sleep(min(2 * attempt, 5) if self.opts.poll_s >= 1 else 0.05)
        self.log(
            f"COULD NOT DESTROY instance {self.instance_id}: run `make vast-destroy ID={self.instance_id}` now"
        )
        return False

    # -- orchestration --------------------------------------------------------------------

    def execute(self) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        exit_code, reason = EXIT_PROVISION, "error"
        with SignalGuard(self.log) as guard, run_lock(self.opts.lock_path):
            try:
                self.preflight()
                offer = self.choose_offer()
                self.create(offer)
                self.wait_running()
                self.wait_ssh()
                self.upload()
                failures = self.open_shell() if self.opts.shell else self.run_tasks()
                self.pull()
                exit_code = EXIT_TASKS_FAILED if failures else EXIT_OK
                reason = f"{failures} task(s) failed" if failures else "ok"
            except Interrupted as exc:
                exit_code, reason = EXIT_SIGNAL_BASE + exc.signum, f"interrupted by {exc}"
                self.log(reason)
            except DeployError as exc:
                exit_code, reason = exc.exit_code, str(exc)
                self.log(f"error: {exc}")
            except Exception as exc:  # noqa: BLE001 - anything unexpected must still destroy
                exit_code, reason = EXIT_PROVISION, f"unexpected {type(exc).__name__}: {exc}"
                self.log(reason)
            finally:
                guard.defer()
                exit_code = self.finish(exit_code, reason, guard)
        return exit_code

    def open_shell(self) -> int:
        assert self.remote is not None
        self.log(
            "opening a shell; "
            + (
                "--keep: the instance stays up afterwards"
                if self.opts.keep
                else "the instance is destroyed when it closes"
            )
        )
        rc = subprocess.run(
            self.remote.ssh(f"{REMOTE_ENV}; cd {REMOTE_APP_DIR} && exec bash -l", tty=True), env=child_env()
        ).returncode
        self.log(f"shell closed (exit {rc})")
        return 0

    def finish(self, exit_code: int, reason: str, guard: SignalGuard) -> int:
        """Always runs: pull what a failed run produced, destroy (unless --keep), write the summary."""
        interrupted = reason.startswith("interrupted") or bool(guard.caught)
        if (
            self.remote is not None
            and self.opts.pull
            and "pulled_to" not in self.summary
            and not interrupted
            and not self.opts.shell
        ):
            with contextlib.suppress(Exception):
                self.deadline = None  # a timed-out run still brings back what it produced
                self.pull()
        if self.opts.keep and self.instance_id is not None:
            self.log(
                f"--keep: instance {self.instance_id} stays up and BILLS; "
                f"`make vast-destroy ID={self.instance_id}` when done"
            )
            destroyed: bool | None = False
        else:
            destroyed = self.destroy() if (self.instance_id is not None or self.create_attempted) else None
        self.summary.update(
            finished_at=_now(),
            exit_code=exit_code,
            reason=reason,
            instance_destroyed=destroyed if self.instance_id is not None else None,
            task_count=len(self.opts.tasks),
            task_failures=sum(1 for r in self.results if r["status"] == "failed"),
        )
        if destroyed is False and not self.opts.keep and exit_code == EXIT_OK:
            exit_code = EXIT_PROVISION
        if guard.caught:
            exit_code = EXIT_SIGNAL_BASE + guard.caught[0]
        self.summary["exit_code"] = exit_code
        summary_path = self.opts.summary_json or (self.run_dir / "summary.json")
        _write_json_atomic(summary_path, self.summary)
        self.log(f"summary: {summary_path}")
        return exit_code


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise DeployError(f"{name} must be a number, not {raw!r}", EXIT_USAGE) from None


def _registry_login(image: str) -> str | None:
    token = os.environ.get("VAST_REGISTRY_TOKEN", "")
    if not token:
        return None
    user = os.environ.get("VAST_REGISTRY_USER", "")
    if not user:
        raise DeployError("VAST_REGISTRY_TOKEN is set but VAST_REGISTRY_USER is not", EXIT_USAGE)
    first = image.split("/", 1)[0]
    registry = os.environ.get("VAST_REGISTRY") or (
        first if ("." in first or ":" in first) and "/" in image else "docker.io"
    )
    return f"-u {user} -p {token} {registry}"


def default_image() -> str:
    image = os.environ.get("VAST_IMAGE", "").strip()
    if image:
        return image
    registry = os.environ.get("PAB_REGISTRY", "").strip().rstrip("/")
    if not registry:
        raise DeployError(
            "set VAST_IMAGE (e.g. ghcr.io/you/py-audio-box:cuda) or PAB_REGISTRY (e.g. ghcr.io/you)",
            EXIT_USAGE,
        )
    return f"{registry}/py-audio-box:cuda"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/vast.sh", description="vast.ai runs that never leave an instance billing."
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("search", help="list offers, best DLPerf per dollar first")
    s.add_argument(
        "--query", default=None, help=f"vast.ai offer query (default VAST_QUERY or {DEFAULT_QUERY!r})"
    )
    s.add_argument("--limit", type=int, default=15)

    for name in ("run", "shell"):
        r = sub.add_parser(
            name,
            help="provision, run tasks, pull /work, destroy"
            if name == "run"
            else "provision and open a shell; destroyed when it closes unless --keep",
        )
        r.add_argument("--job", default=None, help="job name (default: py-audio-box-<UTC time>)")
        r.add_argument(
            "--image", default=None, help="image (default VAST_IMAGE, else $PAB_REGISTRY/py-audio-box:cuda)"
        )
        r.add_argument("--query", default=None)
        r.add_argument("--disk", type=int, default=None, help="disk GB (default VAST_DISK or 60)")
        r.add_argument(
            "--keep", action="store_true", help="do not destroy the instance at the end (it keeps billing)"
        )
        r.add_argument(
            "--push-cache",
            action="append",
            default=[],
            metavar="PATH",
            nargs="?",
            const="cache/voices",
            help="rsync PATH to /cache/<name> first; without PATH the voice registry cache/voices",
        )
        r.add_argument("--no-pull", action="store_true", help="do not copy /work back")
        r.add_argument(
            "--no-sync-code", action="store_true", help="run the image's code instead of this checkout's"
        )
        r.add_argument("--ssh-key", default=os.environ.get("VAST_SSH_KEY") or None)
        r.add_argument("--summary-json", type=Path, default=None)
        r.add_argument("--run-dir", type=Path, default=Path(os.environ.get("VAST_RUN_DIR", "work_remote")))
        r.add_argument(
            "--lock-file",
            type=Path,
            default=Path(os.environ.get("VAST_LOCK_FILE", "~/.cache/py-audio-box/vast-run.lock")),
        )
        r.add_argument(
            "--wait-running", type=float, default=_env_float("VAST_WAIT_RUNNING", 1200), metavar="S"
        )
        r.add_argument("--wait-ssh", type=float, default=_env_float("VAST_WAIT_SSH", 360), metavar="S")
        r.add_argument("--poll", type=float, default=_env_float("VAST_POLL", 5), metavar="S")
        r.add_argument(
            "--max-duration",
            type=float,
            default=_env_float("VAST_MAX_DURATION", 0) or None,
            metavar="S",
            help="hard limit for the whole run in seconds (VAST_MAX_DURATION); then pull and destroy",
        )
        if name == "run":
            r.add_argument(
                "--tasks",
                type=Path,
                default=None,
                help="file: one app invocation per line (# comments, !shell)",
            )
            r.add_argument("--fail-fast", action="store_true")
            r.add_argument("--no-batch", action="store_true", help="run every speak line in its own process")
            r.add_argument("task", nargs=argparse.REMAINDER, help="-- APP ARGS... : one task, quoting kept")

    sub.add_parser("status", help="this tool's instances and the local lock")
    d = sub.add_parser("destroy", help="destroy one instance")
    d.add_argument("id", type=int)
    return p


def cmd_search(args: argparse.Namespace, vast: VastCli) -> int:
    query = args.query or os.environ.get("VAST_QUERY") or DEFAULT_QUERY
    cap = _env_float("VAST_MAX_MONTHLY_PRICE", DEFAULT_MAX_MONTHLY_PRICE)
    offers = vast.search_offers(query)
    print(
        f"{'id':>10} {'gpu':<22} {'n':>2} {'vram':>6} {'sm':>5} {'dlperf/$':>9} {'$/h':>7} {'$/month':>8}  within cap"
    )
    for o in offers[: args.limit]:
        per_month = monthly_price(o)
        print(
            f"{o.get('id', ''):>10} {str(o.get('gpu_name', ''))[:22]:<22} {o.get('num_gpus', 1):>2} "
            f"{float(o.get('gpu_ram') or 0) / 1024:>5.0f}G {o.get('compute_cap', ''):>5} "
            f"{float(o.get('dlperf_per_dphtotal') or 0):>9.1f} {per_month / HOURS_PER_MONTH:>7.3f} {per_month:>8.0f}  "
            f"{'yes' if per_month <= cap else 'NO'}"
        )
    print(f"query: {query}   cap: VAST_MAX_MONTHLY_PRICE={cap:.0f}")
    return EXIT_OK


def cmd_status(vast: VastCli) -> int:
    mine = own_instances(vast.show_instances())
    if not mine:
        print("no instance of this tool is alive")
    for i in mine:
        per_hour = float(i.get("dph_total") or 0)
        print(
            f"{i.get('id')}  {i.get('label')}  {i.get('actual_status')}  {i.get('gpu_name')}  "
            f"${per_hour:.3f}/h  ssh {i.get('ssh_host')}:{i.get('ssh_port')}"
        )
    return EXIT_OK


def _job_name(given: str | None) -> str:
    job = given or "py-audio-box-" + _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    if not job.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise DeployError(f"--job {job!r}: use letters, digits, '-', '_' and '.' only", EXIT_USAGE)
    return job


def cmd_run(args: argparse.Namespace, vast: VastCli, repo: Path, shell: bool) -> int:
    entries: list[list[str] | str] = []
    if not shell:
        inline = list(args.task)
        if inline and inline[0] == "--":
            inline = inline[1:]
        if args.tasks is not None:
            if not args.tasks.is_file():
                raise DeployError(f"--tasks {args.tasks}: no such file", EXIT_USAGE)
            for line in args.tasks.read_text(encoding="utf-8").splitlines():
                parsed = parse_task_line(line)
                if parsed is not None:
                    entries.append(parsed)
        if inline:
            entries.append(inline)
        if not entries:
            raise DeployError("nothing to run: give TASKS=file or ARGS='-- app ...'", EXIT_USAGE)
    tasks = build_tasks(entries, list_apps(repo), batch=not getattr(args, "no_batch", False))
    for tool in ("ssh", "rsync"):
        if shutil.which(tool) is None:
            raise DeployError(f"'{tool}' is not installed", EXIT_USAGE)
    image = args.image or default_image()
    job = _job_name(args.job)
    run_dir = args.run_dir if args.run_dir.is_absolute() else repo / args.run_dir
    opts = RunOptions(
        repo=repo,
        job=job,
        tasks=tasks,
        image=image,
        query=args.query or os.environ.get("VAST_QUERY") or DEFAULT_QUERY,
        disk_gb=args.disk or int(_env_float("VAST_DISK", 60)),
        max_monthly_price=_env_float("VAST_MAX_MONTHLY_PRICE", DEFAULT_MAX_MONTHLY_PRICE),
        keep=args.keep,
        shell=shell,
        push_cache=[str(Path(p) if Path(p).is_absolute() else repo / p) for p in args.push_cache],
        pull=not args.no_pull,
        sync_code=not args.no_sync_code,
        fail_fast=getattr(args, "fail_fast", False),
        ssh_key=os.path.expanduser(args.ssh_key) if args.ssh_key else None,
        lock_path=args.lock_file,
        run_dir=run_dir,
        summary_json=args.summary_json,
        wait_running_s=args.wait_running,
        wait_ssh_s=args.wait_ssh,
        poll_s=args.poll,
        max_duration_s=args.max_duration,
        registry_login=_registry_login(image),
    )
    (run_dir / job).mkdir(parents=True, exist_ok=True)
    log = Log(run_dir / job / "deploy.log")
    vast.log = log
    return Deployment(opts, vast, log).execute()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    repo = Path(os.environ.get("PAB_REPO") or Path(__file__).resolve().parents[3])
    log = Log()
    try:
        vast = VastCli(log)
        if args.command == "search":
            return cmd_search(args, vast)
        if args.command == "status":
            return cmd_status(vast)
        if args.command == "destroy":
            vast.destroy_instance(args.id)
            log(f"destroyed instance {args.id}")
            return EXIT_OK
        return cmd_run(args, vast, repo, shell=args.command == "shell")
    except DeployError as exc:
        print(log.redact(f"vast: {exc}"), file=sys.stderr)
        return exc.exit_code
    except Interrupted as exc:
        return EXIT_SIGNAL_BASE + exc.signum
    except KeyboardInterrupt:
        return EXIT_SIGNAL_BASE + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
