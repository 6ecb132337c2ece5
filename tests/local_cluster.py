#!/usr/bin/env python
"""A Ray cluster of three nodes on this one machine, shaped like clusters/aws.yaml: a head that takes no trial
(CPU 0), a worker with CPUs only, and a worker that declares one GPU and its model the way Ray does for a g5
node (`accelerator_type:A10G`). Used by tests/test_multinode.py; by hand:

    python tests/local_cluster.py /tmp/rehearsal    # prints address and node ids; Ctrl+D or Ctrl+C ends it

A line `reclaim gpu_worker` on its stdin does what a spot interruption does to a GPU worker: the node is killed
at once (no graceful drain), and a new one of the same shape joins, as the autoscaler would start; it prints the
new node's id as {"gpu_worker": ...}.

Everything Ray writes goes under FOLDER: its temp dir FOLDER/ray (sessions, logs, sockets) and the address
file Ray keeps for `ray.init(address="auto")`. Token authentication is on, as on the real clusters, with the
token in FOLDER/auth_token: a driver needs RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH=FOLDER/auth_token. The
CPUs and the GPU are declared, not detected: the nodes share this machine's cores, and torch sees no GPU.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GPU_WORKER = {"num_cpus": 2, "num_gpus": 1, "resources": {"accelerator_type:A10G": 1}}
CPU_WORKER = {"num_cpus": 2}  # room for trials by CPU count: only a GPU request keeps them off it


def driver_environment(folder: Path) -> dict[str, str]:
    """The variables a driver needs to join the cluster (the real clusters share ~/.ray/auth_token)."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(folder / "auth_token")}


def start(folder: Path):
    """(the cluster, the short link made for its temp dir or None, a description to print, the GPU worker)."""
    token = folder / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    # Before Ray is imported: it reads the auth mode once. RAY_TMPDIR moves the address file out of /tmp/ray.
    os.environ.update(driver_environment(folder), RAY_TMPDIR=str(folder))
    from ray.cluster_utils import Cluster

    from tune.cluster import temp_dir_for

    temp, link = temp_dir_for(folder / "ray")  # a short link if the folder is too deep for Ray's sockets
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 0, "temp_dir": str(temp), "include_dashboard": False})
    cpu_worker = cluster.add_node(**CPU_WORKER)
    gpu_worker = cluster.add_node(**GPU_WORKER)
    cluster.wait_for_nodes()
    nodes = {"head": cluster.head_node.node_id, "cpu_worker": cpu_worker.node_id,
             "gpu_worker": gpu_worker.node_id}
    return cluster, link, {"address": cluster.address, "nodes": nodes, "env": driver_environment(folder)}, gpu_worker


def reclaim_gpu_worker(cluster, old):
    """Kill the GPU worker's processes (as a reclaimed spot instance disappears) and start a new one."""
    cluster.remove_node(old, allow_graceful=False)
    new = cluster.add_node(**GPU_WORKER)
    cluster.wait_for_nodes()
    return new


def _stop(signum, frame):
    raise KeyboardInterrupt


def main(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _stop)  # `kill` shuts the nodes down too
    cluster, link, description, gpu_worker = start(folder)
    try:
        print(json.dumps(description), flush=True)
        for line in sys.stdin:  # until whoever started it closes stdin
            if line.split() == ["reclaim", "gpu_worker"]:
                gpu_worker = reclaim_gpu_worker(cluster, gpu_worker)
                print(json.dumps({"gpu_worker": gpu_worker.node_id}), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.shutdown()
        if link is not None:
            link.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} FOLDER")
    sys.exit(main(Path(sys.argv[1]).resolve()))
