"""scripts/vast.sh (and the `make vast-*` targets): vast.ai runs that never leave an instance billing.

    search                      offers, best DLPerf per dollar first (priced with the real disk)
    run [opts] [-- APP ARGS...] rent K instances, run tasks (one shard each), pull /work, destroy
    shell [opts]                rent one and open a shell; destroyed when the shell exits
    status                      this tool's instances and who owns them
    reap [--dry-run]            destroy every instance of this tool that no live run owns
    destroy ID                  destroy one instance (confirmed)

Standard library only on the controlling machine; everything goes through the official `vastai`
CLI, `ssh` and `rsync`. The lifecycle lives in audiobox.cloud (see docs/docker-and-cloud.md).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from audiobox.cli.timeflags import positive_time
from audiobox.cloud.errors import (
    EXIT_NOT_DESTROYED,
    EXIT_OK,
    EXIT_SIGNAL_BASE,
    EXIT_USAGE,
    DeployError,
    Interrupted,
)
from audiobox.cloud.lifecycle import DEFAULT_LOCK, find_orphans, live_owner, run_lock
from audiobox.cloud.run import (
    DEFAULT_MAX_DURATION_S,
    DEFAULT_MAX_MONTHLY_PRICE,
    DEFAULT_ORDER,
    DEFAULT_QUERY,
    DEFAULT_TEARDOWN_GRACE_S,
    Deployment,
    RunOptions,
)
from audiobox.cloud.tasks import build_tasks, list_apps, parse_task_line
from audiobox.cloud.vastapi import (
    HOURS_PER_MONTH,
    DestroyPolicy,
    Label,
    Log,
    VastCli,
    destroy_confirmed,
    is_ours,
    monthly_price,
)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise DeployError(f"{name} must be a number, not {raw!r}", EXIT_USAGE) from None


TIME_FLAGS = (  # flag, its environment default, the default in seconds and as shown, what it limits
    ("--wait-running", "VAST_WAIT_RUNNING", 1200, "20:00", "how long the instance may take to start"),
    ("--wait-ssh", "VAST_WAIT_SSH", 360, "6:00", "how long a running instance may take to answer over SSH"),
    ("--poll", "VAST_POLL", 5, "5", "time between status checks"),
    (
        "--max-duration",
        "VAST_MAX_DURATION",
        DEFAULT_MAX_DURATION_S,
        f"{DEFAULT_MAX_DURATION_S // 3600}:00:00",
        "hard limit for the whole run: then pull and destroy; the instance destroys itself "
        f"{DEFAULT_TEARDOWN_GRACE_S // 60} min later even if this machine is gone",
    ),
)


def _env_time(name: str, default: float) -> float:
    """A wait or limit from the environment, in the apps' time formats (seconds, m:ss, h:mm:ss)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        seconds = positive_time(raw)
    except argparse.ArgumentTypeError as exc:
        raise DeployError(f"{name}: {exc}", EXIT_USAGE) from None
    return seconds


def stderr_line(line: str) -> None:
    """The run's terminal: each log line on stderr (Log stops calling it once stderr is gone)."""
    if sys.stderr is not None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _destroy_policy() -> DestroyPolicy:
    return DestroyPolicy(
        attempts=max(1, int(_env_float("VAST_DESTROY_ATTEMPTS", DestroyPolicy.attempts))),
        backoff_s=_env_float("VAST_DESTROY_BACKOFF", DestroyPolicy.backoff_s),
    )


def _lock_path() -> Path:
    return Path(os.environ.get("VAST_LOCK_FILE") or DEFAULT_LOCK).expanduser()


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


def _with_disk(query: str, disk_gb: int) -> str:
    """Only hosts that can give the disk the instance is created with."""
    return query if "disk_space" in query else f"{query} disk_space >= {disk_gb}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/vast.sh",
        description="vast.ai runs that never leave an instance billing (docs/docker-and-cloud.md).",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("search", help="list offers, best DLPerf per dollar first")
    s.add_argument(
        "--query", default=None, help=f"vast.ai offer query (default VAST_QUERY or {DEFAULT_QUERY!r})"
    )
    s.add_argument(
        "--disk", type=int, default=None, help="disk GB the price includes (default VAST_DISK or 60)"
    )
    s.add_argument("--limit", type=int, default=15)

    for name in ("run", "shell"):
        r = sub.add_parser(
            name,
            help="rent, run tasks, pull /work, destroy"
            if name == "run"
            else "rent one instance and open a shell; destroyed when it closes unless --keep",
        )
        r.add_argument("--job", default=None, help="job name (default: py-audio-box-<UTC time>)")
        r.add_argument(
            "--image", default=None, help="image (default VAST_IMAGE, else $PAB_REGISTRY/py-audio-box:cuda)"
        )
        r.add_argument("--query", default=None)
        r.add_argument("--disk", type=int, default=None, help="disk GB (default VAST_DISK or 60)")
        r.add_argument(
            "--keep",
            action="store_true",
            help="do not destroy the instance at the end and set no self-destruct (it keeps billing)",
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
        for flag, env, default, shown, what in TIME_FLAGS:
            r.add_argument(
                flag,
                type=positive_time,
                default=_env_time(env, default),
                metavar="TS",
                help=f"{what} (seconds, m:ss or h:mm:ss; {env}, default {shown})",
            )
        if name == "run":
            r.add_argument(
                "--tasks",
                type=Path,
                default=None,
                help="file: one app invocation per line (# comments, !shell)",
            )
            r.add_argument(
                "--shards",
                type=int,
                default=int(_env_float("VAST_SHARDS", 1)),
                metavar="K",
                help="split the batch work over K instances (voice-synth batch --shard i/K), then merge",
            )
            r.add_argument(
                "--shard-retries",
                type=int,
                default=1,
                metavar="N",
                help="with --shards: run a failed shard again on a new instance up to N times (default 1)",
            )
            r.add_argument("--fail-fast", action="store_true")
            r.add_argument("--no-batch", action="store_true", help="run every speak line in its own process")
            r.add_argument("task", nargs=argparse.REMAINDER, help="-- APP ARGS... : one task, quoting kept")

    sub.add_parser("status", help="this tool's instances and who owns them")
    rp = sub.add_parser("reap", help="destroy every instance of this tool that no live run owns")
    rp.add_argument("--dry-run", action="store_true", help="list what would be destroyed")
    rp.add_argument(
        "--all-hosts",
        action="store_true",
        help="also instances other machines started that are within their deadline",
    )
    rp.add_argument("--include-kept", action="store_true", help="also instances started with --keep")
    d = sub.add_parser("destroy", help="destroy one instance (until the API confirms it is gone)")
    d.add_argument("id", type=int)
    return p


def cmd_search(args: argparse.Namespace, vast: VastCli) -> int:
    disk = args.disk or int(_env_float("VAST_DISK", 60))
    query = _with_disk(args.query or os.environ.get("VAST_QUERY") or DEFAULT_QUERY, disk)
    cap = _env_float("VAST_MAX_MONTHLY_PRICE", DEFAULT_MAX_MONTHLY_PRICE)
    offers = vast.search_offers(query, DEFAULT_ORDER, storage_gb=disk)
    print(
        f"{'id':>10} {'gpu':<22} {'n':>2} {'vram':>6} {'sm':>5} {'dlperf/$':>9} {'$/h':>7} {'$/month':>8}  within cap"
    )
    for o in offers[: args.limit]:
        per_month = monthly_price(o)
        shown = (
            f"{per_month / HOURS_PER_MONTH:>7.3f} {per_month:>8.0f}" if per_month else f"{'?':>7} {'?':>8}"
        )
        within = "no price" if per_month is None else ("yes" if per_month <= cap else "NO")
        print(
            f"{o.get('id', ''):>10} {str(o.get('gpu_name', ''))[:22]:<22} {o.get('num_gpus', 1):>2} "
            f"{float(o.get('gpu_ram') or 0) / 1024:>5.0f}G {o.get('compute_cap', ''):>5} "
            f"{float(o.get('dlperf_per_dphtotal') or 0):>9.1f} {shown}  {within}"
        )
    print(f"query: {query}   disk: {disk} GB   cap: VAST_MAX_MONTHLY_PRICE={cap:.0f}")
    return EXIT_OK


def cmd_status(vast: VastCli) -> int:
    mine = [i for i in vast.show_instances() if is_ours(i)]
    live = live_owner(_lock_path())
    if live:
        print(f"live run on this machine: {live.get('job')} (pid {live.get('pid')})")
    if not mine:
        print("no instance of this tool is alive")
    orphans, _spared = find_orphans(mine, live=live)
    orphan_ids = {o.id for o in orphans}
    for i in mine:
        per_hour = float(i.get("dph_total") or 0)
        label = Label.parse(str(i.get("label")))
        until = (
            ""
            if label is None or label.until is None
            else _dt.datetime.fromtimestamp(label.until, _dt.timezone.utc)
        )
        print(
            f"{i.get('id')}  {i.get('label')}  {i.get('actual_status')}  {i.get('gpu_name')}  ${per_hour:.3f}/h"
            f"{'  self-destruct ' + until.strftime('%Y-%m-%d %H:%M UTC') if until else ''}"
            f"{'  ORPHAN (make vast-reap)' if int(i['id']) in orphan_ids else ''}"
        )
    return EXIT_OK


def cmd_reap(args: argparse.Namespace, vast: VastCli, log: Log) -> int:
    """Holds the run lock while it reaps when it is free, so no run starts half-way through."""
    path = _lock_path()
    live = live_owner(path)
    if live is None:
        with run_lock(path, {"job": None, "reaper": True}):
            return _reap(args, vast, log, None)
    return _reap(args, vast, log, live)


def _reap(args: argparse.Namespace, vast: VastCli, log: Log, live: dict | None) -> int:
    orphans, spared = find_orphans(
        vast.show_instances(), live=live, all_hosts=args.all_hosts, include_kept=args.include_kept
    )
    for inst, why in spared:
        print(f"keeping {inst.get('id')} ({inst.get('label')}): {why}")
    failed = []
    for orphan in orphans:
        print(
            f"{'would destroy' if args.dry_run else 'destroying'} {orphan.id} ({orphan.instance.get('label')}): {orphan.why}"
        )
        if not args.dry_run and not destroy_confirmed(vast, orphan.id, log, _destroy_policy()):
            failed.append(orphan.id)
    if not orphans:
        print("no orphaned instance")
    if failed:
        log(f"COULD NOT DESTROY instance(s) {' '.join(map(str, failed))}: they may be billing; try again")
        return EXIT_NOT_DESTROYED
    return EXIT_OK


def _job_name(given: str | None) -> str:
    job = given or "py-audio-box-" + _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    if not job.replace("-", "").replace("_", "").replace(".", "").isalnum() or len(job) > 64:
        raise DeployError(f"--job {job!r}: up to 64 letters, digits, '-', '_' and '.'", EXIT_USAGE)
    return job


def cmd_run(args: argparse.Namespace, vast: VastCli, repo: Path, shell: bool) -> int:
    entries: list[list[str] | str] = []
    shards = getattr(args, "shards", 1)
    if shards < 1 or shards > 64:
        raise DeployError("--shards must be between 1 and 64", EXIT_USAGE)
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
    tasks = build_tasks(entries, list_apps(repo), batch=not getattr(args, "no_batch", False), shards=shards)
    for tool in ("ssh", "rsync"):
        if shutil.which(tool) is None:
            raise DeployError(f"'{tool}' is not installed", EXIT_USAGE)
    image = args.image or default_image()
    job = _job_name(args.job)
    run_dir = args.run_dir if args.run_dir.is_absolute() else repo / args.run_dir
    disk = args.disk or int(_env_float("VAST_DISK", 60))
    opts = RunOptions(
        repo=repo,
        job=job,
        tasks=tasks,
        image=image,
        query=_with_disk(args.query or os.environ.get("VAST_QUERY") or DEFAULT_QUERY, disk),
        disk_gb=disk,
        max_monthly_price=_env_float("VAST_MAX_MONTHLY_PRICE", DEFAULT_MAX_MONTHLY_PRICE),
        keep=args.keep,
        shell=shell,
        push_cache=[str(Path(p) if Path(p).is_absolute() else repo / p) for p in args.push_cache],
        pull=not args.no_pull,
        sync_code=not args.no_sync_code,
        fail_fast=getattr(args, "fail_fast", False),
        ssh_key=os.path.expanduser(args.ssh_key) if args.ssh_key else None,
        lock_path=_lock_path(),
        run_dir=run_dir,
        summary_json=args.summary_json,
        wait_running_s=args.wait_running,
        wait_ssh_s=args.wait_ssh,
        poll_s=args.poll,
        max_duration_s=args.max_duration,
        teardown_grace_s=_env_float("VAST_TEARDOWN_GRACE", DEFAULT_TEARDOWN_GRACE_S),
        registry_login=_registry_login(image),
        shards=shards,
        shard_retries=max(0, getattr(args, "shard_retries", 1)),
        destroy=_destroy_policy(),
    )
    (run_dir / job).mkdir(parents=True, exist_ok=True)
    log = Log(run_dir / job / "deploy.log", terminal=stderr_line)
    vast.log = log
    return Deployment(opts, vast, log).execute()


def main(argv: Sequence[str] | None = None) -> int:
    log = Log(terminal=stderr_line)
    try:
        args = _parser().parse_args(argv)
        repo = Path(os.environ.get("PAB_REPO") or Path(__file__).resolve().parents[3])
        vast = VastCli(log)
        if args.command == "search":
            return cmd_search(args, vast)
        if args.command == "status":
            return cmd_status(vast)
        if args.command == "reap":
            return cmd_reap(args, vast, log)
        if args.command == "destroy":
            if destroy_confirmed(vast, args.id, log, _destroy_policy()):
                return EXIT_OK
            log(f"COULD NOT DESTROY instance {args.id}: the API did not confirm it is gone")
            return EXIT_NOT_DESTROYED
        return cmd_run(args, vast, repo, shell=args.command == "shell")
    except DeployError as exc:
        log.to_terminal(log.redact(f"vast: {exc}"))
        return exc.exit_code
    except Interrupted as exc:
        return EXIT_SIGNAL_BASE + exc.signum
    except KeyboardInterrupt:
        return EXIT_SIGNAL_BASE + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
