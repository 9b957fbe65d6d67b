"""A loopback stand-in for the vast.ai REST API, for the real `vastai` CLI (it honours VAST_URL).

It serves the endpoints `vastai` 1.9.1 calls for search offers, create/show/destroy instance and
show instances (paged v1), with the JSON shapes the CLI parses, and keeps instance state. Tests
make it fail the ways the real service does: `faults[op]` is a list of outcomes consumed one per
call ("500", "429", "false" for 200 {"success": false}, "ok"); an outcome ending in "*" repeats.

Each instance also gets a "host": a folder standing for its filesystem (/work, /app, /cache, /root,
/opt live under it) and an SSH port that the `ssh` stand-in next to this file maps to that folder.
When an instance turns `running`, its `onstart` script runs as a local process group with the
environment vast.ai gives a container: CONTAINER_ID and CONTAINER_API_KEY, a key this server
accepts only for that instance's own endpoints. Destroying the instance kills that process group
and removes the host, as the real container goes away.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from hostpaths import ROOT_DIRS, localize


class FakeVast:
    def __init__(self, account_key: str):
        self.account_key = account_key
        self.lock = threading.RLock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.server.handle_error = lambda *_: None  # a client killed mid-request is expected here
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.reset(None)

    # -- test control ---------------------------------------------------------------------

    def reset(self, state_dir: Path | None, offers: list[dict] | None = None) -> None:
        with self.lock:
            for inst in list(getattr(self, "instances", {}).values()):
                self._kill(inst)
            self.state_dir = state_dir
            self.offers = offers or []
            self.instances: dict[int, dict] = {}
            self.gone: dict[int, dict] = {}
            self.faults: dict[str, list[str]] = {}
            self.calls: list[dict] = []
            self.searches: list[dict] = []
            self.next_id = 1000
            self.next_port = 40022
            self.boot_polls = 0  # `show instance` calls that still see `loading`
            self.ssh_refusals = 0  # SSH connections refused after `running` (sshd not up yet)
            self.python = sys.executable  # its virtualenv is /opt/venv on the fake hosts

    def close(self) -> None:
        self.reset(None)
        self.server.shutdown()
        self.server.server_close()

    def alive(self) -> list[dict]:
        with self.lock:
            return [dict(i) for i in self.instances.values()]

    def add_instance(self, label: str, status: str = "running", onstart: str = "") -> int:
        """An instance created outside the test's run (an orphan, someone else's)."""
        with self.lock:
            return self._create({"label": label, "image": "x", "disk": 10, "onstart": onstart}, 1, status)

    def host_root(self, instance_id: int) -> Path:
        assert self.state_dir is not None
        return self.state_dir / "hosts" / str(instance_id)

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for c in self.calls if c["method"] == method and re.fullmatch(pattern, c["path"]))

    # -- behaviour ------------------------------------------------------------------------

    def _fault(self, op: str) -> str:
        plan = self.faults.get(op) or []
        if not plan:
            return "ok"
        outcome = plan[0]
        if outcome.endswith("*"):
            return outcome[:-1]
        plan.pop(0)
        return outcome

    def _create(self, body: dict, offer_id: int, status: str = "loading") -> int:
        iid = self.next_id
        self.next_id += 1
        port = self.next_port
        self.next_port += 1
        offer = next((o for o in self.offers if o.get("id") == offer_id), {})
        self.instances[iid] = {
            "id": iid,
            "label": body.get("label"),
            "actual_status": status,
            "intended_status": "running",
            "cur_state": status,
            "status_msg": "",
            "start_date": time.time(),
            "extra_env": [],
            "image_uuid": body.get("image"),
            "image_runtype": body.get("runtype") or "ssh",
            "disk_space": body.get("disk"),
            "onstart": body.get("onstart"),
            "image_login": body.get("image_login"),
            "ssh_host": "127.0.0.1",
            "ssh_port": port,
            "public_ipaddr": "127.0.0.1",
            "ports": {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]},
            "gpu_name": offer.get("gpu_name", "RTX 3090"),
            "num_gpus": offer.get("num_gpus", 1),
            "dph_total": offer.get("dph_total", 0.25),
            "_polls": 0,
            "_key": secrets.token_hex(16),
            "_proc": None,
        }
        if status == "running":
            self._boot(self.instances[iid])
        return iid

    def _public(self, inst: dict) -> dict:
        return {k: v for k, v in inst.items() if not k.startswith("_")}

    def _boot(self, inst: dict) -> None:
        """The container starts: a host folder, an SSH port, and the onstart script."""
        if self.state_dir is None:
            return
        root = self.host_root(inst["id"])
        for d in ROOT_DIRS:
            (root / d).mkdir(parents=True, exist_ok=True)
        # The image's /opt/venv: this test run's virtualenv (its pyvenv.cfg makes it one).
        venv_root = Path(self.python).parent.parent
        if not (root / "opt" / "venv").exists():
            (root / "opt" / "venv").symlink_to(venv_root)
        venv = root / "opt" / "venv" / "bin"
        ports = self.state_dir / "ports"
        ports.mkdir(exist_ok=True)
        (ports / f"{inst['ssh_port']}.json").write_text(
            json.dumps({"id": inst["id"], "root": str(root), "refusals": self.ssh_refusals})
        )
        if inst.get("onstart"):
            env = {
                "PATH": f"{venv}:{os.environ.get('PATH', '')}",
                "HOME": str(root / "root"),
                "CONTAINER_ID": str(inst["id"]),
                "CONTAINER_API_KEY": inst["_key"],
                "VAST_URL": self.url,
            }
            inst["_proc"] = subprocess.Popen(
                ["bash", "-c", localize(inst["onstart"], root)],
                env=env,
                cwd=root / "root",
                stdin=subprocess.DEVNULL,
                stdout=open(root / "onstart.log", "ab"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _kill(self, inst: dict) -> None:
        proc = inst.get("_proc")
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
        if self.state_dir is not None:
            (self.state_dir / "ports" / f"{inst['ssh_port']}.json").unlink(missing_ok=True)

    def _destroy(self, iid: int) -> bool:
        inst = self.instances.pop(iid, None)
        if inst is None:
            return False
        self._kill(inst)
        self.gone[iid] = inst
        root = self.host_root(iid) if self.state_dir is not None else None
        if root is not None and root.exists():
            shutil.rmtree(root, ignore_errors=True)
        return True

    # -- HTTP -----------------------------------------------------------------------------

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):
                pass

            def _reply(self, status: int, body, headers: dict | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                try:
                    return json.loads(raw or b"{}")
                except ValueError:
                    return {}

            def _serve(self, method: str):
                parts = urlsplit(self.path)
                path, query = parts.path, parse_qs(parts.query)
                body = self._body()
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                with fake.lock:
                    instance_key = next(
                        (
                            i["id"]
                            for i in list(fake.instances.values()) + list(fake.gone.values())
                            if i["_key"] == token
                        ),
                        None,
                    )
                    fake.calls.append(
                        {
                            "method": method,
                            "path": path,
                            "auth": "account"
                            if token == fake.account_key
                            else ("instance" if instance_key else "none"),
                            "body": body,
                        }
                    )
                    m = re.fullmatch(r"/api/v0/instances/(\d+)/", path)
                    own = m is not None and instance_key == int(m.group(1))
                    if token != fake.account_key and not own:
                        return self._reply(
                            401, {"success": False, "error": "auth", "msg": "Invalid user key"}
                        )
                    op = {
                        ("POST", "/api/v0/bundles/"): "search",
                        ("GET", "/api/v1/instances/"): "list",
                    }.get((method, path))
                    if op is None and re.fullmatch(r"/api/v0/asks/\d+/", path) and method == "PUT":
                        op = "create"
                    if op is None and m:
                        op = {"GET": "show", "DELETE": "destroy", "PUT": "update"}.get(method)
                    if op is None:
                        return self._reply(404, {"success": False, "msg": f"no route {method} {path}"})
                    outcome = fake._fault(op)
                    if outcome == "500":
                        return self._reply(
                            500, {"success": False, "error": "server_error", "msg": "Internal error"}
                        )
                    if outcome == "429":
                        return self._reply(
                            429,
                            {"success": False, "error": "rate_limited", "msg": "Too many requests"},
                            {"Retry-After": "0"},
                        )
                    if outcome == "false":
                        return self._reply(200, {"success": False, "error": "failed", "msg": f"{op} failed"})
                    return getattr(self, f"_{op}")(m, body, query)

            def _search(self, _m, body, _q):
                fake.searches.append(body)
                storage = float(body.get("allocated_storage") or 5.0)
                rows = []
                for offer in fake.offers:
                    row = dict(offer)
                    if "dph_base" in row and "storage_cost" in row:
                        # $/GB/month of disk, as the real search prices `allocated_storage`.
                        row["dph_total"] = row["dph_base"] + row["storage_cost"] * storage / (30 * 24)
                    rows.append(row)
                return self._reply(200, {"offers": rows})

            def _list(self, _m, _body, query):
                filters = json.loads((query.get("select_filters") or ["{}"])[0])
                rows = sorted(fake.instances.values(), key=lambda i: i["id"])
                labels = (filters.get("label") or {}).get("in")
                if labels is not None:
                    rows = [r for r in rows if r["label"] in labels]
                after = int((query.get("after_token") or ["0"])[0])
                limit = int((query.get("limit") or ["25"])[0])
                page = [r for r in rows if r["id"] > after][:limit]
                more = len([r for r in rows if r["id"] > after]) > limit
                return self._reply(
                    200,
                    {
                        "instances": [fake._public(r) for r in page],
                        "next_token": str(page[-1]["id"]) if more else None,
                        "total_instances": len(rows),
                    },
                )

            def _create(self, m, body, _q):
                offer_id = int(self.path.split("/")[-2])
                iid = fake._create(body, offer_id)
                return self._reply(200, {"success": True, "new_contract": iid})

            def _show(self, m, _body, _q):
                inst = fake.instances.get(int(m.group(1)))
                if inst is None:
                    return self._reply(200, {"instances": None})
                inst["_polls"] += 1
                if inst["actual_status"] == "loading" and inst["_polls"] > fake.boot_polls:
                    inst["actual_status"] = inst["cur_state"] = "running"
                    fake._boot(inst)
                return self._reply(200, {"instances": fake._public(inst)})

            def _destroy(self, m, _body, _q):
                if fake._destroy(int(m.group(1))):
                    return self._reply(200, {"success": True})
                return self._reply(
                    404, {"success": False, "error": "no_such_instance", "msg": "Instance not found"}
                )

            def _update(self, m, body, _q):
                inst = fake.instances.get(int(m.group(1)))
                if inst is None:
                    return self._reply(404, {"success": False, "msg": "Instance not found"})
                if body.get("state") == "stopped":
                    inst["actual_status"] = inst["intended_status"] = "stopped"
                if "label" in body:
                    inst["label"] = body["label"]
                return self._reply(200, {"success": True})

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def do_PUT(self):
                self._serve("PUT")

            def do_DELETE(self):
                self._serve("DELETE")

        return Handler
