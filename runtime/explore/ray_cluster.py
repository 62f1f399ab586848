"""A Ray cluster of several nodes on this machine, on loopback: for tests and for trying
`--executor ray` without a real cluster.

    with LocalCluster(nodes=2) as cl:          # `ray start --head` + `ray start --address`
        explore(..., executor="ray", address=cl.address)

Why not `ray stop`: it kills every Ray process of the machine by name, and several users may run
clusters side by side here. A LocalCluster marks the processes it starts with an environment
variable and stops exactly those and their children (Ray renames workers, `ray::IDLE`, which
can hide their environment, so descendants are found through the process tree).

Why the environment: Ray replaces 127.0.0.1 by the machine's routable address unless
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, so that variable keeps the head (and, through
`use_loopback`, the driver) on loopback; the other nodes join through `_JOIN`. Token
authentication is turned off (RAY_AUTH_MODE=disabled) because a token would have to be shared
through the user's home directory; every port listens on 127.0.0.1 only. Use a real cluster's own settings in
production: this class is only for one machine.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from cococ.ir.core import CococError

MARK = "COCOC_RAY_CLUSTER"
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
                "RAY_USAGE_STATS_ENABLED": "0"}


# A worker node refuses to start with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, and without it Ray
# resolves 127.0.0.1 (the --node-ip-address and the head's address) to the routable address, where
# a loopback head does not listen: the joining `ray start` runs with that resolution turned off.
_JOIN = ("import sys, ray._private.services as s; s.resolve_ip_for_localhost = lambda h: h; "
         "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keep_loopback() -> None:
    """Keep this driver's 127.0.0.1 as 127.0.0.1: without it Ray swaps a loopback address for the
    machine's routable one, where a loopback head does not listen, and `ray.init` waits forever.
    Sets the environment for Ray not yet imported, and Ray's module constant if it already is."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if "ray" in sys.modules:
        from ray._private import ray_constants  # local: ray is optional (cococ[ray])
        ray_constants.ENABLE_RAY_CLUSTER = False


def use_loopback() -> None:
    """Make this process (a driver) connect to a LocalCluster: loopback, and no token (the
    cluster runs without one)."""
    os.environ.update(LOOPBACK_ENV)
    keep_loopback()


class LocalCluster:
    """`nodes` Ray nodes on 127.0.0.1 with `cpus` CPUs each, in their own temp folder."""

    def __init__(self, nodes: int = 2, cpus: int = 1, object_store_mb: int = 80, ray: str | None = None):
        self.nodes, self.cpus, self.object_store_mb = nodes, cpus, object_store_mb
        self.ray = ray or str(Path(sys.executable).with_name("ray"))
        self.mark = uuid.uuid4().hex[:12]
        self.temp = tempfile.mkdtemp(prefix="cococ-ray-")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.started: list[int] = []    # which node each `ray start` was (0: head)

    def _start(self, head: bool) -> None:
        node = len(self.started)
        env = dict(os.environ, **LOOPBACK_ENV, **{MARK: f"{self.mark}:{node}"})
        args = [self.ray, "start", f"--num-cpus={self.cpus}",
                f"--object-store-memory={self.object_store_mb * 1024 * 1024}", "--disable-usage-stats",
                f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}"]
        if head:
            args += ["--head", "--node-ip-address=127.0.0.1", f"--port={self.port}", f"--temp-dir={self.temp}",
                     "--include-dashboard=false", f"--ray-client-server-port={free_port()}"]
        else:   # `ray start --address`, keeping Ray from turning 127.0.0.1 into the routable address
            env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
            args = [sys.executable, "-c", _JOIN] + args[1:] + ["--node-ip-address=127.0.0.1",
                                                                 f"--address={self.address}"]
        r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise CococError(f"ray start ({'head' if head else 'node'}) failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        self.started.append(node)

    def start(self) -> "LocalCluster":
        try:
            self._start(head=True)
            for _ in range(self.nodes - 1):
                self._start(head=False)
        except BaseException:
            self.stop()
            raise
        return self

    def processes(self, node: int | None = None) -> list:
        """This cluster's processes (of one node, or all), children included."""
        roots = []
        for p in psutil.process_iter():
            try:
                tag = p.environ().get(MARK, "")
            except (psutil.Error, OSError):
                continue
            if tag.startswith(self.mark + ":") and (node is None or tag == f"{self.mark}:{node}"):
                roots.append(p)
        seen = {p.pid: p for p in roots}
        for p in roots:
            try:
                seen.update({c.pid: c for c in p.children(recursive=True)})
            except psutil.Error:
                pass
        return list(seen.values())

    def wait_nodes(self, timeout: float = 60.0) -> int:
        """Wait until every node is alive in the driver's view (`ray.nodes()`); returns the count."""
        import ray  # local: ray is optional (cococ[ray])
        t0 = time.time()
        while True:
            alive = sum(1 for n in ray.nodes() if n["Alive"])
            if alive >= self.nodes or time.time() - t0 > timeout:
                return alive
            time.sleep(0.5)

    def stop(self) -> None:
        procs = self.processes()
        for p in procs:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, left = psutil.wait_procs(procs, timeout=3)
        for p in left:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=5)
        shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
