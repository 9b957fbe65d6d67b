"""The rented host: SSH/rsync command lines, and the boot script with the instance's self-destruct."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

REMOTE_APP_DIR = "/app"
REMOTE_WORK_DIR = "/work"
REMOTE_CACHE_DIR = "/cache"
# SSH sessions on vast.ai do not see the image's ENV lines, so every remote command sets them.
REMOTE_ENV = (
    "export PATH=/opt/venv/bin:$PATH AUDIOBOX_CACHE=/cache AUDIOBOX_WORK=/work XDG_CACHE_HOME=/cache"
    " HF_HOME=/cache/huggingface TORCH_HOME=/cache/torch HF_HUB_DISABLE_XET_TRANSPORT=1"
)
ONSTART_LIMIT = 4048  # characters vast.ai accepts in `onstart`

# The self-destruct, written to the instance at boot and started in the background. It uses the
# credentials vast.ai gives every container: CONTAINER_ID and CONTAINER_API_KEY, a key that only
# acts on this instance, so the account's API key never leaves the user's machine. At the run's
# deadline it destroys the instance and checks that it is gone; if the destroy is refused it stops
# the instance (no GPU billing), and the reaper or the next run's sweep destroys what is left.
_SELF_DESTRUCT = """import json,os,sys,time,urllib.request as u
t=int(sys.argv[1]);w=float(sys.argv[2]);time.sleep(max(0,t-time.time()))
i=os.environ.get("CONTAINER_ID","");k=os.environ.get("CONTAINER_API_KEY","")
b=(os.environ.get("VAST_URL") or "https://console.vast.ai")+"/api/v0/instances/"+i+"/"
def r(m,d=None):
 q=u.Request(b,method=m,data=d,headers={"Authorization":"Bearer "+k,"Content-Type":"application/json"})
 try:
  with u.urlopen(q,timeout=30) as f:return f.status,json.loads(f.read() or b"{}")
 except Exception as e:return 0,{"error":str(e)}
if not(i and k):sys.exit("no CONTAINER_ID/CONTAINER_API_KEY")
for n in range(8):
 print(time.ctime(),"destroy",r("DELETE",b"{}"),flush=True)
 s,j=r("GET")
 if s==200 and not j.get("instances"):sys.exit(0)
 time.sleep(min(60,w*2**n))
print(time.ctime(),"stop",r("PUT",b'{"state":"stopped"}'),flush=True)
"""


def onstart_script(self_destruct_at: int | None, backoff_s: float = 5.0) -> str:
    """The instance's boot script: folders, and (unless --keep) the self-destruct at the deadline."""
    lines = [f"mkdir -p {REMOTE_WORK_DIR} {REMOTE_CACHE_DIR}", "touch /root/.no_auto_tmux"]
    if self_destruct_at is not None:
        lines += [
            "cat > /root/pab-self-destruct.py <<'PAB_EOF'",
            _SELF_DESTRUCT.rstrip(),
            "PAB_EOF",
            "py=$(command -v python3 || echo /opt/venv/bin/python)",
            f'nohup "$py" /root/pab-self-destruct.py {int(self_destruct_at)} {backoff_s:g} '
            ">>/root/pab-self-destruct.log 2>&1 </dev/null &",
        ]
    script = "\n".join(lines) + "\n"
    if len(script) > ONSTART_LIMIT:
        raise ValueError(f"onstart script is {len(script)} characters, over vast.ai's {ONSTART_LIMIT}")
    return script


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

    def push(self, *srcs_and_dst: str, delete: bool = False) -> list[str]:
        argv = ["rsync", "-az", "--partial", "-e", shlex.join(self.ssh_base())]
        if delete:
            argv.append("--delete")
        return [*argv, *srcs_and_dst]

    def pull(self, remote_dir: str, local_dir: Path) -> list[str]:
        """rsync from the instance, which we do not trust: symlinks that point outside the pulled
        tree are skipped (--safe-links), no devices or special files, no remote owners or modes."""
        return [
            "rsync",
            "-rltz",
            "--safe-links",
            "--no-devices",
            "--no-specials",
            "--chmod=Du=rwx,Dgo=rx,Fu=rw,Fgo=r",
            "--partial",
            "-e",
            shlex.join(self.ssh_base()),
            f"{self.target}:{remote_dir.rstrip('/')}/",
            f"{local_dir}/",
        ]
