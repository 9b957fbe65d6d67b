"""The official `vastai` CLI (PyPI `vastai`, pinned 1.9.1), called with --raw and parsed as JSON.

What the pinned CLI really does shapes this module: it exits 0 when the API answers HTTP 500, 429
or `{"success": false}` (the error goes to stderr, stdout stays empty), and `destroy instance`
prints nothing even with --raw. So no call is trusted by its exit code: reads must parse as JSON,
and a destroy counts only once `show instance` says the instance is gone.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from audiobox.cloud.errors import EXIT_USAGE, DeployError

LABEL_PREFIX = "py-audio-box"
HOURS_PER_MONTH = 730
SECRET_ENV_VARS = ("VAST_API_KEY", "VAST_REGISTRY_TOKEN")
GONE_STATES = ("destroyed", "deleted")

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


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Log:
    """Progress lines for the run's log file and a terminal, with secrets masked.

    `terminal` is the app's way to show a line (scripts/vast.sh: stderr); the library writes no
    terminal itself. A log line can never raise: the file is written first, and a terminal that went
    away (closed stderr, a broken pipe after `| head`, a hung-up SSH session) only turns terminal
    output off. The teardown runs through here, and a print must not be what leaves an instance billing."""

    def __init__(self, path: Path | None = None, terminal: Callable[[str], None] | None = None):
        self.path = path
        self.secrets = [v for k in SECRET_ENV_VARS if (v := os.environ.get(k, "")) and len(v) >= 4]
        self.terminal = terminal
        self._lock = threading.Lock()

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def __call__(self, message: str) -> None:
        self.write(f"[vast] {message}")

    def write(self, line: str) -> None:
        line = self.redact(line.rstrip("\n"))
        with self._lock:
            if self.path is not None:
                try:
                    with open(self.path, "a", encoding="utf-8") as fh:
                        fh.write(f"{now_iso()} {line}\n")
                except OSError:
                    pass
            self.to_terminal(line)

    def to_terminal(self, line: str) -> None:
        if self.terminal is None:
            return
        try:
            self.terminal(line)
        except (OSError, ValueError):
            self.terminal = None  # closed, broken or hung up: the log file still has everything


def child_env(*, keep_api_key: bool = False) -> dict[str, str]:
    """The environment for a child process, without the secrets it does not need."""
    env = dict(os.environ)
    for name in SECRET_ENV_VARS:
        if not (keep_api_key and name == "VAST_API_KEY" and env.get(name)):
            env.pop(name, None)  # an empty VAST_API_KEY would hide the CLI's saved key file
    env.setdefault("VASTAI_NO_UPDATE_CHECK", "1")  # no network call of its own per command
    return env


# --------------------------------------------------------------------------------------------
# Labels: which run (and shard) an instance belongs to, from which machine, until when
# --------------------------------------------------------------------------------------------


def this_host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:24] or "host"


@dataclasses.dataclass(frozen=True)
class Label:
    """`py-audio-box:<job>:<i>of<K>:<host>:<until epoch|keep>`; `until` is when the instance's
    own self-destruct fires (None for --keep instances, which only an explicit reap touches)."""

    job: str
    shard: int = 1
    shards: int = 1
    host: str = dataclasses.field(default_factory=this_host)
    until: int | None = None

    def __str__(self) -> str:
        until = "keep" if self.until is None else str(self.until)
        return f"{LABEL_PREFIX}:{self.job}:{self.shard}of{self.shards}:{self.host}:{until}"

    @classmethod
    def parse(cls, text: str) -> Label | None:
        m = re.fullmatch(rf"{LABEL_PREFIX}:([A-Za-z0-9._-]+):(\d+)of(\d+):([A-Za-z0-9-]+):(keep|\d+)", text)
        if not m:
            return None
        until = None if m.group(5) == "keep" else int(m.group(5))
        return cls(m.group(1), int(m.group(2)), int(m.group(3)), m.group(4), until)


def is_ours(instance: dict) -> bool:
    """This tool's instances (by label); the account's other instances are none of our business."""
    return str(instance.get("label") or "").startswith(LABEL_PREFIX + ":")


def monthly_price(offer: dict) -> float | None:
    """Dollars per 730-hour month, or None when the offer has no usable price (never $0)."""
    for key in ("dph_total_adj", "dph_total"):
        value = offer.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value) * HOURS_PER_MONTH
    return None


# --------------------------------------------------------------------------------------------
# The CLI wrapper
# --------------------------------------------------------------------------------------------


class VastCli:
    """`vastai ... --raw`, parsed; errors become DeployError with the API's message."""

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
        shown = [f"<{len(a.splitlines())}-line script>" if "\n" in a else a for a in args]
        self.log(f"$ vastai {shlex.join(shown)}")
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
            raise DeployError(f"vastai {' '.join(args[:2])} timed out after {timeout:.0f}s") from exc
        if proc.returncode != 0 or _api_error(proc.stderr):
            raise DeployError(f"vastai {' '.join(args[:2])} failed: {self.log.redact(_last_line(proc))}")
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
                f"vastai {' '.join(args[:2])} did not return JSON: {out.strip()[:200] or '(nothing)'}"
            ) from exc

    def search_offers(self, query: str, order: str, *, storage_gb: float) -> list[dict]:
        # --storage: the price includes the disk the instance is created with (the CLI prices 5 GB
        # unless told).
        rows = self._json(["search", "offers", query, "--order", order, "--storage", f"{storage_gb:g}"])
        if isinstance(rows, dict):
            rows = rows.get("offers")
        if not isinstance(rows, list):
            raise DeployError(f"vastai search offers returned {type(rows).__name__}, not a list")
        return [r for r in rows if isinstance(r, dict)]

    def show_instances(self) -> list[dict]:
        rows = self._json(["show", "instances"])
        if isinstance(rows, dict):
            rows = rows.get("instances")
        if not isinstance(rows, list):
            raise DeployError("vastai show instances did not return a list")
        return [r for r in rows if isinstance(r, dict)]

    def show_instance(self, instance_id: int) -> dict | None:
        """The instance's row, or None once the API says it does not exist."""
        row = self._json(["show", "instance", str(instance_id)])
        if isinstance(row, dict) and "instances" in row and not row.get("id"):
            row = row["instances"]
        if row is None:
            return None
        if not isinstance(row, dict):
            raise DeployError(f"vastai show instance {instance_id}: unexpected answer")
        return row

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
        instance_id = reply.get("new_contract") if isinstance(reply, dict) and reply.get("success") else None
        if not instance_id:
            raise DeployError(f"vastai create instance returned no instance id: {str(reply)[:200]}")
        return int(instance_id)

    def request_destroy(self, instance_id: int) -> None:
        """Asks for the destroy. Its outcome is unknown until `gone()` says so (see module doc)."""
        self._run(["destroy", "instance", str(instance_id), "-y", "--raw"])

    def gone(self, instance_id: int) -> bool:
        row = self.show_instance(instance_id)
        return row is None or str(row.get("actual_status") or "") in GONE_STATES


def _api_error(stderr: str) -> bool:
    """--raw errors arrive on stderr as {"error": true, ...} while the exit code stays 0."""
    for line in (stderr or "").splitlines():
        line = line.strip()
        if line.startswith("{") and '"error"' in line:
            try:
                if json.loads(line).get("error"):
                    return True
            except ValueError:
                continue
        if line.startswith("Failed with error"):
            return True
    return False


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [x for x in ((proc.stderr or "") + "\n" + (proc.stdout or "")).splitlines() if x.strip()]
    if not lines:
        return f"exit {proc.returncode}"
    text = lines[0] if lines[0].startswith("{") else lines[-1]
    try:
        data = json.loads(text)
        return f"HTTP {data.get('status_code')}: {data.get('msg')}"
    except ValueError:
        return text.strip()


@dataclasses.dataclass(frozen=True)
class DestroyPolicy:
    """How hard to try before declaring an instance leaked: attempts with doubling backoff."""

    attempts: int = 8
    backoff_s: float = 2.0
    max_backoff_s: float = 30.0


def destroy_confirmed(
    vast: VastCli,
    instance_id: int,
    log: Log,
    policy: DestroyPolicy = DestroyPolicy(),
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Destroys until `show instance` confirms the instance is gone. True only when confirmed."""
    delay = policy.backoff_s
    for attempt in range(1, policy.attempts + 1):
        try:
            vast.request_destroy(instance_id)
        except DeployError as exc:
            log(f"destroy {instance_id}, attempt {attempt}/{policy.attempts}: {exc}")
        try:
            if vast.gone(instance_id):
                log(f"destroyed instance {instance_id} (confirmed by the API)")
                return True
            log(f"instance {instance_id} still exists after destroy attempt {attempt}/{policy.attempts}")
        except DeployError as exc:
            log(f"checking instance {instance_id}: {exc}")
        if attempt < policy.attempts:
            sleep(delay)
            delay = min(delay * 2, policy.max_backoff_s)
    return False
