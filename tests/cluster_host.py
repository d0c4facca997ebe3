"""A multi-node Ray cluster on this machine, in its own process (for tests/test_clusters.py).

Run as a script with ``RAY_TMPDIR`` set to a short private directory. It starts a
``ray.cluster_utils.Cluster``: a zero-CPU head (where drivers connect, like the
zero-CPU node a Prefect worker joins as) and N one-CPU worker nodes, all on
127.0.0.1. It prints one JSON line, ``{"address": GCS, "workers": [node ids]}``,
then reads commands from stdin:

* ``remove <node id>``: kill that worker node's processes at once
  (``allow_graceful=False``, a lost machine), then print ``removed <node id>``;
* end of input: shut the cluster down and exit.

Why a separate process: the pytest process then never holds Ray state (Ray
allows one connection per process), and ``RAY_TMPDIR`` keeps the cluster's
address file (``ray_current_cluster``) out of the machine-wide ``/tmp/ray``,
so ``address="auto"`` elsewhere on the machine is not redirected to it.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # every port on 127.0.0.1
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def main(n_workers: int, agent_port: int) -> None:
    assert os.environ.get("RAY_TMPDIR"), "set RAY_TMPDIR to a short private directory"
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "node_ip_address": "127.0.0.1",
            "include_dashboard": False,
            "ray_client_server_port": None,  # no Ray Client server (10001 may be taken)
            "dashboard_agent_listen_port": agent_port,  # not the default 52365
        },
    )
    workers = {}
    for _ in range(n_workers):
        node = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        workers[node.node_id] = node
    print(json.dumps({"address": cluster.address, "workers": list(workers)}), flush=True)
    try:
        for line in sys.stdin:
            command, _, node_id = line.strip().partition(" ")
            if command == "remove":
                cluster.remove_node(workers.pop(node_id), allow_graceful=False)
                print(f"removed {node_id}", flush=True)
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
