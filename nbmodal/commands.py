"""The verb functions of ``nbmodal`` and ``%nbmodal``, by their historical names.

They live in ``nbmodal._cli``, one module per resource; this module only re-exports them for code
(and tests) that call a verb directly, e.g. ``commands.runs_table()``.
"""

from __future__ import annotations

from nbmodal._cli.agent import agent_start, agent_status, agent_stop
from nbmodal._cli.common import plain_sink
from nbmodal._cli.containers import containers_table
from nbmodal._cli.gpus import gpus_table
from nbmodal._cli.hosts import host_add, host_doctor, host_list, host_remove
from nbmodal._cli.image import image_command
from nbmodal._cli.runs import attach, runs_table, show_logs, stop
from nbmodal._cli.sessions import sessions_table, stop_session
from nbmodal._cli.stores import peek, store_command
from nbmodal._cli.volume import volume_command

__all__ = [
    "agent_start", "agent_status", "agent_stop", "attach", "containers_table", "gpus_table", "host_add",
    "host_doctor", "host_list", "host_remove", "image_command", "peek", "plain_sink", "runs_table",
    "sessions_table", "show_logs", "stop", "stop_session", "store_command", "volume_command",
]
