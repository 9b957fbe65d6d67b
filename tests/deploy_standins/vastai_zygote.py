"""The real `vastai` CLI, imported once and forked per call: the same code, arguments, HTTP calls,
output and exit codes as the console script, without its 1.5 s of imports on every call.

    python vastai_zygote.py serve SOCKET    # started once per test session (VAST_URL set)
    vastai-fast ARGS...                      # the client: passes argv, env, cwd and fds 0-2

The first is a plain loop: accept, fork, run `vastai.cli.main.main()` in the child with the
caller's stdio, send back the exit status. tests/test_deploy_vast.py also runs the real console
script for the paths where the process itself matters.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import traceback


def serve(path: str) -> None:
    import vastai.cli.main as cli_main
    from vastai.cli.commands import (  # noqa: F401  (registers every command, as main() does)
        auth,
        benchmarks,
        billing,
        deployments,
        endpoints,
        instances,
        keys,
        machines,
        metrics,
        misc,
        offers,
        price_increase,
        repl,
        storage,
        teams,
        uninstall,
        update,
    )

    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(64)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        msg, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
        pid = os.fork()
        if pid == 0:
            srv.close()
            os.setsid()
            request = json.loads(msg)
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            os.environ.clear()
            os.environ.update(request["env"])
            os.chdir(request["cwd"])
            sys.argv = request["argv"]
            code = 0
            try:
                sys.exit(cli_main.main())
            except SystemExit as exc:
                if exc.code is None:
                    code = 0
                elif isinstance(exc.code, int):
                    code = exc.code
                else:
                    print(exc.code, file=sys.stderr)
                    code = 1
            except BaseException:  # noqa: BLE001 - the console script would print it and exit 1
                traceback.print_exc()
                code = 1
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001
                    pass
            try:
                conn.sendall(struct.pack("!i", code))
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)
        conn.close()
        while True:
            try:
                done, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if done == 0:
                break


def client(path: str, argv: list[str]) -> int:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    request = {"argv": ["vastai", *argv], "env": dict(os.environ), "cwd": os.getcwd()}
    socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
    data = b""
    while len(data) < 4:
        chunk = conn.recv(4 - len(data))
        if not chunk:
            return 1
        data += chunk
    return struct.unpack("!i", data)[0]


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2])
    else:
        sys.exit(client(os.environ["PAB_VASTAI_ZYGOTE"], sys.argv[1:]))
