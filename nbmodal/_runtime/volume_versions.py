"""A volume's copies across hosts, as ``nbmodal volume ls NAME``, ``Volume.versions()`` and the sidebar show them.

Every configured host (and the local agent, when it runs) is asked at once for its copy of the
volume: its role (home or replica), the committed version it has, and whether it holds writes
not committed yet; a host that can't be reached says so instead.

    >>> versions_on_hosts("ckpt")
    {'gpu1': {'role': 'home', 'version': 7, 'pending': False, 'home': 'gpu1'}, 'gpu2': {...}}
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nbmodal.exceptions import NotFoundError
from nbmodal.hosts import LOCAL, load_hosts
from nbmodal_wire import pb


def versions_on_hosts(name: str) -> dict[str, dict[str, Any]]:
    """host -> {role, home, version, pending} (or {error}) for each host that has a copy or can't be asked."""
    from nbmodal._runtime.connection import connection, existing_client

    def ask(host: str) -> dict[str, Any] | None:
        try:
            client = existing_client() if host == LOCAL else connection(host).client()
            if client is None:
                return None
            reply = client.volume_call(pb.VolumeRequest(op=pb.VOLUME_VERSIONS, name=name))
        except NotFoundError:
            return None
        except Exception as exc:  # an unreachable host is shown as such, not hidden
            return {"error": str(exc).splitlines()[0]}
        copy = reply.copy
        return {"role": copy.role or "home", "home": copy.home or host, "version": copy.version,
                "pending": copy.pending,
                "overwritten": [{"path": o.path, "version": o.version, "host": o.host} for o in reply.overwritten]}

    hosts = [LOCAL, *load_hosts()]
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        answers = dict(zip(hosts, pool.map(ask, hosts)))
    return {host: answer for host, answer in answers.items() if answer is not None}
