"""torchrun's static rendezvous, reduced: start --nproc-per-node copies of ``-m MODULE ARGS`` with the
environment torchrun gives each process (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK,
MASTER_ADDR, MASTER_PORT), wait for them, exit non-zero if one failed."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nnodes", type=int, required=True)
    parser.add_argument("--nproc-per-node", type=int, required=True)
    parser.add_argument("--node-rank", type=int, required=True)
    parser.add_argument("--master-addr", required=True)
    parser.add_argument("--master-port", type=int, required=True)
    parser.add_argument("-m", dest="module", required=True)
    parser.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    procs = []
    for local in range(args.nproc_per_node):
        env = dict(os.environ, RANK=str(args.node_rank * args.nproc_per_node + local), LOCAL_RANK=str(local),
                   WORLD_SIZE=str(args.nnodes * args.nproc_per_node), LOCAL_WORLD_SIZE=str(args.nproc_per_node),
                   GROUP_RANK=str(args.node_rank), MASTER_ADDR=args.master_addr, MASTER_PORT=str(args.master_port))
        procs.append(subprocess.Popen([sys.executable, "-m", args.module, *args.args], env=env))
    codes = [proc.wait() for proc in procs]
    return next((code for code in codes if code), 0)


if __name__ == "__main__":
    sys.exit(main())
