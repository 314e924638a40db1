"""A stand-in for torch in the multi-node tests: only ``python -m torch.distributed.run`` (torchrun).

No torch wheel here (a CPU build is ~200 MB); tests/test_cluster_ssh.py puts this directory on the
containers' PYTHONPATH to check what nbmodal's ``procs_per_node`` runs and how.
"""
