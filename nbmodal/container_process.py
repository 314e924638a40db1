"""``nbmodal.container_process``: Modal's ``ContainerProcess`` (a process in a Sandbox); not available yet."""

from __future__ import annotations

from nbmodal._unavailable import ContainerProcess

__all__ = ["ContainerProcess"]
