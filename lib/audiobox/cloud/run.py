"""`vast.sh run`: rent K instances (one per shard), run the tasks, pull, destroy, on every exit path.

lock (one run per machine) -> sweep (this run's label; this machine's orphans) -> search offers
with the real disk size -> price guard -> per shard, in its own thread: create (labelled, with a
self-destruct at the run's deadline) -> wait until running -> wait until SSH answers -> sync code
-> tasks -> pull -> destroy (confirmed), a failed shard once more on a new instance -> merge the
shards -> summary.json. The main thread only waits, so SIGINT/SIGTERM/SIGHUP and the deadline land
there; `finish()` then stops the shards, pulls what it may within the deadline, destroys every
instance until the API confirms it gone, sweeps the run's label once more and reports loudly what
it could not destroy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shlex
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from audiobox.cloud.errors import (
    EXIT_NOT_DESTROYED,
    EXIT_OK,
    EXIT_PROVISION,
    EXIT_REFUSED,
    EXIT_SIGNAL_BASE,
    EXIT_TASKS_FAILED,
    EXIT_USAGE,
    DeployError,
    Interrupted,
)
from audiobox.cloud.lifecycle import SignalGuard, find_orphans, run_lock
from audiobox.cloud.remote import (
    REMOTE_APP_DIR,
    REMOTE_CACHE_DIR,
    REMOTE_ENV,
    REMOTE_WORK_DIR,
    Remote,
    onstart_script,
)
from audiobox.cloud.tasks import Task, is_batch
from audiobox.cloud.vastapi import (
    GONE_STATES,
    HOURS_PER_MONTH,
    DestroyPolicy,
    Label,
    Log,
    VastCli,
    child_env,
    destroy_confirmed,
    is_ours,
    monthly_price,
    now_iso,
    this_host,
)
from audiobox.errors import UserError
from audiobox.fsutil import atomic_write_json, atomic_write_text
from audiobox.shard import gather, merge

DEFAULT_QUERY = "reliability > 0.98 gpu_ram >= 20 compute_cap >= 800 compute_cap < 1200"
DEFAULT_ORDER = "dlperf_per_dphtotal-"
DEFAULT_MAX_MONTHLY_PRICE = 250.0
DEFAULT_MAX_DURATION_S = 6 * 3600
DEFAULT_TEARDOWN_GRACE_S = 900  # after the deadline: pull and destroy; then the instance destroys itself
FAILED_STATES = ("exited", "error", "offline", "destroyed", "deleted")


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
    max_duration_s: float = DEFAULT_MAX_DURATION_S
    teardown_grace_s: float = DEFAULT_TEARDOWN_GRACE_S
    registry_login: str | None = None
    shards: int = 1
    shard_retries: int = 1  # a failed shard runs once more on a new instance (K > 1 only)
    destroy: DestroyPolicy = DestroyPolicy()


class _Stopped(Exception):
    """The run is stopping (signal, deadline, another shard's fail-fast): leave the shard."""


@dataclasses.dataclass
class Slot:
    """One shard and the instance(s) it ran on."""

    shard: int
    label: Label
    run_dir: Path
    instance_id: int | None = None
    create_attempted: bool = False
    remote: Remote | None = None
    offer: dict | None = None
    status: str = "pending"  # pending | running | ok | failed
    error: str | None = None
    pulled: bool = False
    results: list[dict] = dataclasses.field(default_factory=list)
    instances: list[dict] = dataclasses.field(default_factory=list)  # {"id", "destroyed"}

    def record(self, instance_id: int) -> dict:
        entry = {"id": instance_id, "shard": self.shard, "destroyed": None}
        self.instances.append(entry)
        return entry

    @property
    def current(self) -> dict | None:
        return self.instances[-1] if self.instances and self.instances[-1]["destroyed"] is not True else None


class Deployment:
    def __init__(self, opts: RunOptions, vast: VastCli, log: Log):
        self.opts = opts
        self.vast = vast
        self.log = log
        self.run_dir = opts.run_dir / opts.job
        self.host = this_host()
        started = time.time()
        self.deadline = time.monotonic() + opts.max_duration_s
        self.self_destruct_at = (
            None if opts.keep else int(started + opts.max_duration_s + opts.teardown_grace_s)
        )
        self.stop = threading.Event()
        self._children: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._offers_lock = threading.Lock()
        self._offers: list[dict] = []
        self.timed_out = False
        self.slots = [
            Slot(
                shard=i,
                label=Label(opts.job, i, opts.shards, self.host, self.self_destruct_at),
                run_dir=self.run_dir if opts.shards == 1 else self.run_dir / "shards" / str(i),
            )
            for i in range(1, opts.shards + 1)
        ]
        self.summary: dict[str, Any] = {
            "job": opts.job,
            "labels": [str(s.label) for s in self.slots],
            "image": opts.image,
            "query": opts.query,
            "disk_gb": opts.disk_gb,
            "shards": opts.shards,
            "started_at": now_iso(),
            "max_duration_s": opts.max_duration_s,
            "self_destruct_at": self.self_destruct_at,
            "keep": opts.keep,
        }

    # -- helpers ------------------------------------------------------------------------------

    def _remaining(self, limit: float | None = None) -> float | None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeployError(f"run exceeded its maximum duration ({self.opts.max_duration_s:.0f}s)")
        return left if limit is None else min(left, limit)

    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise _Stopped()

    def _call(self, argv: list[str], *, timeout: float | None, what: str, deadline: bool = True) -> int:
        """Runs ssh/rsync; its output goes to the log (file and, while it works, the terminal)."""
        if self.stop.is_set() and deadline:
            raise _Stopped()
        limit = self._remaining(timeout) if deadline else timeout
        self.log(f"$ {self.log.redact(shlex.join(argv))}")
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=child_env(),
            text=True,
            errors="replace",
        )
        with self._lock:
            self._children.add(proc)
        reader = threading.Thread(target=self._copy_output, args=(proc,), daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            self.log(f"{what} timed out")
            if deadline and time.monotonic() >= self.deadline:
                raise DeployError(
                    f"run exceeded its maximum duration ({self.opts.max_duration_s:.0f}s)"
                ) from None
            rc = 124
        finally:
            reader.join(timeout=5)
            with self._lock:
                self._children.discard(proc)
        if self.stop.is_set() and deadline and rc != 0:
            raise _Stopped()
        return rc

    def _copy_output(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        with contextlib.suppress(Exception):
            for line in proc.stdout:
                self.log.write(line)

    def _kill_children(self) -> None:
        with self._lock:
            for proc in list(self._children):
                with contextlib.suppress(OSError):
                    proc.kill()

    # -- before any instance -------------------------------------------------------------------

    def sweep_at_start(self) -> None:
        """Destroys what an earlier run left: this run's label, and this machine's orphans (the
        lock is ours, so no live run on this machine owns any of them)."""
        try:
            instances = self.vast.show_instances()
        except DeployError as exc:
            raise DeployError(f"cannot list instances before renting one: {exc}") from exc
        orphans, spared = find_orphans(instances, live=None, host=self.host, legacy=False)
        for inst, why in spared:
            self.log(f"leaving instance {inst.get('id')} ({inst.get('label')}): {why}")
        results = []
        for orphan in orphans:
            self.log(
                f"sweep: instance {orphan.id} ({orphan.instance.get('label')}) is an orphan: {orphan.why}"
            )
            ok = destroy_confirmed(self.vast, orphan.id, self.log, self.opts.destroy)
            if not ok:
                self.log(f"COULD NOT DESTROY orphan {orphan.id}: it may be billing")
            results.append({"id": orphan.id, "label": orphan.instance.get("label"), "destroyed": ok})
        self.summary["sweep_at_start"] = results

    def choose_offers(self) -> None:
        offers = self.vast.search_offers(self.opts.query, DEFAULT_ORDER, storage_gb=self.opts.disk_gb)
        if not offers:
            raise DeployError(f"no offer matches {self.opts.query!r}", EXIT_REFUSED)
        priced = [o for o in offers if monthly_price(o) is not None and o.get("id") is not None]
        if len(priced) < len(offers):
            self.log(f"skipping {len(offers) - len(priced)} offer(s) without a price")
        affordable = [o for o in priced if (monthly_price(o) or 0) <= self.opts.max_monthly_price]
        if not priced:
            raise DeployError("price guard: no matching offer states its price", EXIT_REFUSED)
        if len(affordable) < self.opts.shards:
            cheapest = min(priced, key=lambda o: monthly_price(o) or 0)
            price = monthly_price(cheapest) or 0
            raise DeployError(
                f"price guard: {len(affordable)} offer(s) within VAST_MAX_MONTHLY_PRICE="
                f"{self.opts.max_monthly_price:.0f} for {self.opts.shards} instance(s); the cheapest costs "
                f"${price:.0f}/month (${price / HOURS_PER_MONTH:.3f}/h) with {self.opts.disk_gb} GB disk",
                EXIT_REFUSED,
            )
        self._offers = affordable

    def _next_offer(self, tried: set) -> dict:
        """The best affordable offer not taken; a retry searches again, avoiding the offers the
        shard already failed on."""
        with self._offers_lock:
            pool = [o for o in self._offers if o.get("id") not in tried]
            if not pool:
                self.choose_offers()
                pool = [o for o in self._offers if o.get("id") not in tried]
            if not pool:
                raise DeployError("no affordable offer left to rent")
            self._offers.remove(pool[0])
            return pool[0]

    # -- one shard ------------------------------------------------------------------------------

    def _slot_main(self, slot: Slot) -> None:
        attempts = 1 + (self.opts.shard_retries if self.opts.shards > 1 else 0)
        for attempt in range(1, attempts + 1):
            slot.status, slot.error = "running", None
            try:
                failures = self._run_slot(slot)
                slot.status = "failed" if failures else "ok"
                if failures:
                    slot.error = f"{failures} task(s) failed"
            except _Stopped:
                slot.status, slot.error = "failed", slot.error or "stopped"
                return
            except DeployError as exc:
                slot.status, slot.error = "failed", str(exc)
                self.log(f"shard {slot.shard}: {exc}")
                if "maximum duration" in str(exc):
                    return
            except Exception as exc:  # noqa: BLE001 - a shard's bug must not skip the destroy
                slot.status, slot.error = "failed", f"unexpected {type(exc).__name__}: {exc}"
                self.log(f"shard {slot.shard}: {slot.error}")
            if slot.status == "ok" or self.stop.is_set():
                break
            if attempt < attempts:
                self.log(f"shard {slot.shard} failed ({slot.error}); once more on a new instance")
                self._release(slot)
        if not self.stop.is_set():
            self._release(slot)  # done: stop paying for it now, not when the other shards finish

    def _release(self, slot: Slot) -> None:
        if self.opts.keep or self.opts.shell:
            return
        self._destroy_slot(slot)
        slot.remote, slot.instance_id, slot.create_attempted = None, None, False

    def _run_slot(self, slot: Slot) -> int:
        slot.results.clear()
        slot.pulled = False
        slot.offer = self._next_offer({i.get("offer") for i in slot.instances})
        self._create(slot)
        self._wait_running(slot)
        self._upload(slot)
        try:
            failures = self._open_shell(slot) if self.opts.shell else self._run_tasks(slot)
        except DeployError:
            if self.opts.shards > 1 and not self.stop.is_set():
                with contextlib.suppress(DeployError, _Stopped):
                    self._pull(slot)  # what the shard finished, for its next attempt to resume from
            raise
        self._pull(slot)
        return failures

    def _create(self, slot: Slot) -> None:
        offer = slot.offer or {}
        per_hour = (monthly_price(offer) or 0) / HOURS_PER_MONTH
        self.log(
            f"shard {slot.shard}: offer {offer.get('id')}: {offer.get('num_gpus', 1)}x {offer.get('gpu_name')} "
            f"${per_hour:.3f}/h (${per_hour * 24:.2f}/day, ${per_hour * HOURS_PER_MONTH:.0f}/month)"
        )
        slot.create_attempted = True
        self._remaining()
        slot.instance_id = self.vast.create_instance(
            int(offer["id"]),
            image=self.opts.image,
            disk_gb=self.opts.disk_gb,
            label=str(slot.label),
            onstart=onstart_script(self.self_destruct_at),
            login=self.opts.registry_login,
        )
        slot.record(slot.instance_id)["offer"] = offer.get("id")
        slot.run_dir.mkdir(parents=True, exist_ok=True)
        # Written at once, so even a killed run leaves the id behind.
        atomic_write_text(slot.run_dir / "instance_id", f"{slot.instance_id}\n")
        self.log(f"shard {slot.shard}: created instance {slot.instance_id} (label {slot.label})")

    def _wait_running(self, slot: Slot) -> None:
        assert slot.instance_id is not None
        running_by = time.monotonic() + self.opts.wait_running_s
        ssh_by: float | None = None
        last = None
        while True:
            self._remaining()
            info = self.vast.show_instance(slot.instance_id) or {"actual_status": "destroyed"}
            status = str(info.get("actual_status") or "")
            if status != last:
                msg = str(info.get("status_msg") or "").strip()
                self.log(f"instance {slot.instance_id}: {status or 'pending'} {msg}".rstrip())
                last = status
            if status in FAILED_STATES:
                raise DeployError(f"instance {slot.instance_id} went to '{status}'")
            if status != "running":
                if time.monotonic() >= running_by:
                    raise DeployError(
                        f"instance {slot.instance_id} not running after {self.opts.wait_running_s:.0f}s "
                        f"(last status '{status or 'pending'}')"
                    )
                self._sleep(self.opts.poll_s)
                continue
            ssh_by = ssh_by or time.monotonic() + self.opts.wait_ssh_s
            endpoint = ssh_endpoint(info)
            if endpoint is not None:
                remote = Remote(*endpoint, slot.run_dir / "known_hosts", key=self.opts.ssh_key)
                if self._call(remote.ssh("true"), timeout=30, what="ssh probe") == 0:
                    slot.remote = remote
                    self.log(f"shard {slot.shard}: ssh ready at {endpoint[0]}:{endpoint[1]}")
                    return
            if time.monotonic() >= ssh_by:
                raise DeployError(
                    f"instance {slot.instance_id} not reachable over SSH after {self.opts.wait_ssh_s:.0f}s"
                )
            self._sleep(self.opts.poll_s)

    def _upload(self, slot: Slot) -> None:
        remote = slot.remote
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
                remote.push(*srcs, f"{remote.target}:{REMOTE_APP_DIR}/", delete=True),
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
            rc = self._call(remote.push(src, dest), timeout=1800, what="cache push")
            if rc != 0:
                raise DeployError(f"pushing {path} failed (rsync exit {rc})")
        earlier = slot.run_dir / "work"
        if self.opts.shards > 1 and earlier.is_dir() and any(earlier.iterdir()):
            # A shard running again continues from what its earlier attempt finished and pulled:
            # `voice-synth batch --shard` skips the items its manifest records as done.
            rc = self._call(
                remote.push(f"{earlier}/", f"{remote.target}:{REMOTE_WORK_DIR}/"),
                timeout=1800,
                what="resume push",
            )
            if rc != 0:
                raise DeployError(f"pushing the shard's earlier output failed (rsync exit {rc})")
        batches = [t for t in self.opts.tasks if t.batch_items]
        if batches:
            local_dir = self.run_dir / "batches"
            local_dir.mkdir(parents=True, exist_ok=True)
            for task in batches:
                path = local_dir / f"batch-{task.index:03d}.jsonl"
                atomic_write_text(
                    path, "".join(json.dumps(it, ensure_ascii=False) + "\n" for it in task.batch_items or [])
                )
                task.argv = ["voice-synth", "batch", f"{REMOTE_WORK_DIR}/.vast-batches/{path.name}"]
            rc = self._call(
                remote.push(str(local_dir) + "/", f"{remote.target}:{REMOTE_WORK_DIR}/.vast-batches/"),
                timeout=300,
                what="batch upload",
            )
            if rc != 0:
                raise DeployError(f"uploading batch files failed (rsync exit {rc})")

    def remote_command(self, task: Task, slot: Slot) -> str:
        argv = list(task.argv)
        if self.opts.shards > 1 and is_batch(argv):
            argv += ["--shard", f"{slot.shard}/{self.opts.shards}"]
        body = task.shell if task.shell is not None else "./run-direct " + shlex.join(argv)
        return f"{REMOTE_ENV}; cd {REMOTE_APP_DIR} && {body}"

    def _run_tasks(self, slot: Slot) -> int:
        remote = slot.remote
        assert remote is not None
        failures = 0
        for task in self.opts.tasks:
            command = self.remote_command(task, slot)
            shown = command.split(" && ", 1)[1]
            self.log(
                f"shard {slot.shard} task {task.index + 1}/{len(self.opts.tasks)} ({task.mode}): {shown}"
            )
            started = time.monotonic()
            record = {
                "index": task.index,
                "shard": slot.shard,
                "mode": task.mode,
                "lines": task.source_lines,
                "command": shown,
                "exit_code": None,
                "status": "running",
            }
            slot.results.append(record)
            rc = self._call(remote.ssh(command), timeout=None, what=f"task {task.index + 1}")
            record.update(
                exit_code=rc,
                status="ok" if rc == 0 else "failed",
                seconds=round(time.monotonic() - started, 2),
            )
            if rc != 0:
                failures += 1
                self.log(f"shard {slot.shard} task {task.index + 1} failed (exit {rc})")
                if self.opts.fail_fast:
                    break
        return failures

    def _open_shell(self, slot: Slot) -> int:
        assert slot.remote is not None
        self.log(
            "opening a shell; "
            + (
                "--keep: the instance stays up afterwards"
                if self.opts.keep
                else "the instance is destroyed when it closes"
            )
        )
        rc = subprocess.run(
            slot.remote.ssh(f"{REMOTE_ENV}; cd {REMOTE_APP_DIR} && exec bash -l", tty=True), env=child_env()
        ).returncode
        self.log(f"shell closed (exit {rc})")
        return 0

    def _pull(self, slot: Slot, *, budget: float | None = None) -> None:
        remote = slot.remote
        if remote is None or not self.opts.pull or self.opts.shell:
            return
        dest = slot.run_dir / "work"
        dest.mkdir(parents=True, exist_ok=True)
        if budget is None:
            rc = self._call(remote.pull(REMOTE_WORK_DIR, dest), timeout=3600, what="pull")
        else:
            rc = self._call(remote.pull(REMOTE_WORK_DIR, dest), timeout=budget, what="pull", deadline=False)
        slot.pulled = rc == 0
        if rc != 0:
            self.log(f"shard {slot.shard}: pulling /work failed (rsync exit {rc})")

    # -- teardown -------------------------------------------------------------------------------

    def _destroy_slot(self, slot: Slot) -> None:
        if slot.instance_id is None and slot.create_attempted:
            # Interrupted inside `create`: the instance may exist without our knowing its id.
            with contextlib.suppress(DeployError):
                for inst in self.vast.show_instances():
                    if inst.get("label") == str(slot.label) and inst.get("id") not in {
                        i["id"] for i in slot.instances
                    }:
                        slot.instance_id = int(inst["id"])
                        slot.record(slot.instance_id)
        entry = slot.current
        if entry is None:
            return
        entry["destroyed"] = destroy_confirmed(self.vast, entry["id"], self.log, self.opts.destroy)

    def sweep_at_exit(self) -> list[int]:
        """Every instance still carrying this run's labels is destroyed; returns those left."""
        labels = {str(s.label) for s in self.slots}
        try:
            left = [
                i
                for i in self.vast.show_instances()
                if is_ours(i) and i.get("label") in labels and str(i.get("actual_status")) not in GONE_STATES
            ]
        except DeployError as exc:
            self.log(f"sweep at exit: cannot list instances ({exc})")
            return [e["id"] for s in self.slots for e in s.instances if e["destroyed"] is not True]
        known = {e["id"]: e for s in self.slots for e in s.instances}
        remaining = []
        for inst in left:
            iid = int(inst["id"])
            entry = known.get(iid)
            if entry is None:
                entry = {"id": iid, "shard": None, "destroyed": None}
                self.slots[0].instances.append(entry)
                self.log(f"sweep at exit: instance {iid} ({inst.get('label')}) was not known to this run")
            if entry["destroyed"] is not False:  # False: already tried with the whole policy
                entry["destroyed"] = destroy_confirmed(self.vast, iid, self.log, self.opts.destroy)
            if not entry["destroyed"]:
                remaining.append(iid)
        return remaining

    def finish(self, exit_code: int, reason: str, guard: SignalGuard, threads: list[threading.Thread]) -> int:
        """Always runs: stop the shards, pull what a failed run produced (within the deadline's
        grace), destroy every instance (unless --keep), sweep the label, write the summary."""
        self.stop.set()
        self._kill_children()
        for t in threads:
            t.join(timeout=180)  # a vastai call in flight ends within its own timeout
        interrupted = reason.startswith("interrupted") or bool(guard.caught)
        if self.opts.pull and not interrupted and not self.opts.shell:
            for slot in self.slots:
                if slot.remote is not None and not slot.pulled:
                    budget = self._teardown_budget()
                    if budget > 0:
                        with contextlib.suppress(Exception):
                            self._pull(slot, budget=budget)
        not_destroyed: list[int] = []
        if self.opts.keep:
            for slot in self.slots:
                for e in slot.instances:
                    e["destroyed"] = False
                    self.log(
                        f"--keep: instance {e['id']} stays up and BILLS; `make vast-destroy ID={e['id']}` when done"
                    )
        else:
            for slot in self.slots:
                with contextlib.suppress(Exception):
                    self._destroy_slot(slot)
            if any(s.create_attempted or s.instances for s in self.slots):
                not_destroyed = self.sweep_at_exit()
        for slot in self.slots:
            not_destroyed += [
                e["id"] for e in slot.instances if e["destroyed"] is False and not self.opts.keep
            ]
        not_destroyed = sorted(set(not_destroyed))
        self._write_summary(exit_code, reason, not_destroyed)
        if not_destroyed:
            ids = " ".join(map(str, not_destroyed))
            self.log(
                f"COULD NOT DESTROY instance(s) {ids}: the API did not confirm they are gone and they may be "
                f"BILLING. Run `make vast-reap` (or `make vast-destroy ID=...`) now; each destroys itself at "
                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(self.self_destruct_at or 0))}."
            )
            if exit_code in (EXIT_OK, EXIT_TASKS_FAILED):
                exit_code = EXIT_NOT_DESTROYED
        if guard.caught:
            exit_code = EXIT_SIGNAL_BASE + guard.caught[0]
        self.summary["exit_code"] = exit_code
        self._save_summary()
        return exit_code

    def _teardown_budget(self) -> float:
        """Seconds a post-failure pull may take: within the deadline's grace, leaving time to
        destroy before the instance's own self-destruct."""
        left = self.deadline + self.opts.teardown_grace_s / 2 - time.monotonic()
        return max(0.0, min(600.0, left))

    def _write_summary(self, exit_code: int, reason: str, not_destroyed: list[int]) -> None:
        instances = [e for s in self.slots for e in s.instances]
        destroyed = None if not instances else all(e["destroyed"] is True for e in instances)
        self.summary.update(
            finished_at=now_iso(),
            exit_code=exit_code,
            reason=reason,
            instances=instances,
            instance_destroyed=destroyed,
            not_destroyed=not_destroyed,
            tasks=[r for s in self.slots for r in s.results],
            task_count=len(self.opts.tasks),
            task_failures=sum(1 for s in self.slots for r in s.results if r["status"] == "failed"),
            shard_results=[
                {"shard": s.shard, "status": s.status, "error": s.error, "pulled": s.pulled}
                for s in self.slots
            ],
        )
        if self.opts.shards == 1 and self.slots[0].instances:
            self.summary["instance_id"] = self.slots[0].instances[-1]["id"]
        offer = self.slots[0].offer
        if offer is not None:
            price = monthly_price(offer) or 0
            self.summary["offer"] = {
                "id": offer.get("id"),
                "gpu": offer.get("gpu_name"),
                "num_gpus": offer.get("num_gpus"),
                "gpu_ram_gb": round(float(offer.get("gpu_ram") or 0) / 1024, 1),
                "compute_cap": offer.get("compute_cap"),
                "dlperf_per_dphtotal": offer.get("dlperf_per_dphtotal"),
                "price_per_hour": round(price / HOURS_PER_MONTH, 4),
                "price_per_month": round(price, 2),
            }
        if self.opts.shards == 1 and self.slots[0].pulled:
            self.summary["pulled_to"] = str(self.slots[0].run_dir / "work")

    def _save_summary(self) -> None:
        path = self.opts.summary_json or (self.run_dir / "summary.json")
        try:
            atomic_write_json(path, self.summary)
            self.log(f"summary: {path}")
        except OSError as exc:
            self.log(f"could not write the summary {path}: {exc}")

    # -- orchestration --------------------------------------------------------------------

    def execute(self) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        exit_code, reason = EXIT_PROVISION, "error"
        threads: list[threading.Thread] = []
        owner = {"job": self.opts.job, "host": self.host, "labels": self.summary["labels"]}
        with SignalGuard(self.log) as guard, run_lock(self.opts.lock_path, owner):
            try:
                self.sweep_at_start()
                self.choose_offers()
                threads = [
                    threading.Thread(target=self._slot_main, args=(s,), name=f"shard-{s.shard}", daemon=True)
                    for s in self.slots
                ]
                for t in threads:
                    t.start()
                while any(t.is_alive() for t in threads):
                    for t in threads:
                        t.join(timeout=0.1)
                    if time.monotonic() >= self.deadline:
                        self.timed_out = True
                        raise DeployError(
                            f"run exceeded its maximum duration ({self.opts.max_duration_s:.0f}s)"
                        )
                    if self.opts.fail_fast and any(s.status == "failed" for s in self.slots):
                        break
                exit_code, reason = self._outcome()
                if exit_code == EXIT_OK and self.opts.shards > 1 and self.opts.pull:
                    self._merge_shards()
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
                exit_code = self.finish(exit_code, reason, guard, threads)
        return exit_code

    def _merge_shards(self) -> None:
        """The shards' batch outputs, copied together under work/ with one manifest.json each."""
        merged = []
        try:
            out_dirs = gather([s.run_dir / "work" for s in self.slots], self.run_dir / "work")
            for out_dir in out_dirs:
                result = merge(out_dir, self.opts.shards)
                self.log(f"merged {result.shards} shards: {result.done}/{result.items} items in {out_dir}")
                merged.append(str(result.manifest_path))
        except UserError as exc:
            raise DeployError(f"merging the shards: {exc}", EXIT_TASKS_FAILED) from exc
        self.summary["merged"] = merged
        self.summary["pulled_to"] = str(self.run_dir / "work")

    def _outcome(self) -> tuple[int, str]:
        failed = [s for s in self.slots if s.status != "ok"]
        if not failed:
            return EXIT_OK, "ok"
        tasks_failed = [s for s in failed if s.error and s.error.endswith("task(s) failed")]
        if len(tasks_failed) == len(failed):
            n = sum(1 for s in failed for r in s.results if r["status"] == "failed")
            return EXIT_TASKS_FAILED, f"{n} task(s) failed"
        first = next(s for s in failed if s not in tasks_failed)
        return EXIT_PROVISION, first.error or "failed"


def ssh_endpoint(info: dict) -> tuple[str, int] | None:
    """(host, port) from `show instance`: the direct port mapping when there is one, else the proxy."""
    ports = info.get("ports") or {}
    mapped = ports.get("22/tcp") if isinstance(ports, dict) else None
    try:
        if mapped and info.get("public_ipaddr"):
            return str(info["public_ipaddr"]).strip(), int(mapped[0]["HostPort"])
        if info.get("ssh_host") and info.get("ssh_port"):
            return str(info["ssh_host"]), int(info["ssh_port"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return None
