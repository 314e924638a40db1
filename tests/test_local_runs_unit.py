"""The local run socket's file (remote_agent/local_runs.py): an agent removes its own socket when it stops,
never the one a newer agent has bound at the same path meanwhile."""

from __future__ import annotations

import asyncio
import stat
from typing import Any, cast

import pytest

from nbmodal_wire import local_runs as wire
from remote_agent.local_runs import close_local_runs, serve_local_runs

pytestmark = pytest.mark.unit

NO_AGENT = cast(Any, None)  # these tests send no run, so no agent is asked


def test_a_stopping_agent_leaves_a_newer_agents_socket_alone(tmp_path):
    async def scenario() -> None:
        path = wire.socket_path(tmp_path)
        older = await serve_local_runs(tmp_path, NO_AGENT, "old-token")
        assert older is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
        newer = await serve_local_runs(tmp_path, NO_AGENT, "new-token")
        assert newer is not None
        close_local_runs(older, tmp_path)
        assert path.exists()  # the newer agent's
        close_local_runs(newer, tmp_path)
        assert not path.exists()

    asyncio.run(scenario())


def test_a_state_dir_too_deep_for_a_socket_gets_none(tmp_path):
    deep = tmp_path / ("d" * 120)
    assert not wire.usable_path(wire.socket_path(deep))
    assert asyncio.run(serve_local_runs(deep, NO_AGENT, "token")) is None
