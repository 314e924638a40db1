"""The sidebar's REST API under ``<base_url>nbmodal/api/``: a few small tornado handlers over ``Dashboard``.

Every handler needs Jupyter's own authentication; the agents' tokens never
leave the server. Calls to agents block (gRPC, SSH), so they run in threads.
"""

from __future__ import annotations

import io
import json

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.ioloop import IOLoop

from nbmodal.exceptions import NotFoundError
from nbmodal.server.dashboard import Dashboard, HostUnavailable
from nbmodal.server.proxy import setup_proxy

_NAME = r"([^/]+)"


class _Handler(APIHandler):
    def initialize(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def answer(self, method, *args) -> None:
        """Call ``method`` in a thread and write its JSON, or a JSON error with a fitting status."""
        try:
            result = await IOLoop.current().run_in_executor(None, method, *args)
        except NotFoundError as exc:  # not on the agent
            self.set_status(404)
            result = {"error": str(exc)}
        except (ValueError, HostUnavailable) as exc:
            self.set_status(400 if isinstance(exc, ValueError) else 503)
            result = {"error": str(exc)}
        except Exception as exc:  # an unreachable host, a lost agent: said, never a stack page
            self.log.warning("nbmodal sidebar: %s", exc)
            self.set_status(502)
            result = {"error": f"{type(exc).__name__}: {exc}"}
        self.finish(json.dumps(result))


class OverviewHandler(_Handler):
    @web.authenticated
    async def get(self) -> None:
        await self.answer(self.dashboard.overview)


class RunLogHandler(_Handler):
    @web.authenticated
    async def get(self, host: str, run_id: str) -> None:
        await self.answer(self.dashboard.run_log, host, run_id, int(self.get_query_argument("after", "0")))


class RunStopHandler(_Handler):
    @web.authenticated
    async def post(self, host: str, run_id: str) -> None:
        await self.answer(self.dashboard.stop_run, host, run_id)


class AppStopHandler(_Handler):
    @web.authenticated
    async def post(self, host: str, name: str) -> None:
        await self.answer(self.dashboard.stop_app, host, name)


class ContainerStopHandler(_Handler):
    @web.authenticated
    async def post(self, host: str, container_id: str) -> None:
        await self.answer(self.dashboard.stop_container, host, container_id)


class VolumeHandler(_Handler):
    @web.authenticated
    async def get(self, host: str, name: str) -> None:
        await self.answer(self.dashboard.volume_entries, host, name, self.get_query_argument("path", "/"))

    @web.authenticated
    async def delete(self, host: str, name: str) -> None:
        await self.answer(self.dashboard.volume_remove, host, name, self.get_query_argument("path"))


class VolumeDownloadHandler(_Handler):
    @web.authenticated
    async def get(self, host: str, name: str) -> None:
        path = self.get_query_argument("path")
        buffer = io.BytesIO()
        try:
            await IOLoop.current().run_in_executor(None, self.dashboard.volume_file, host, name, path, buffer)
        except Exception as exc:
            self.set_status(404 if isinstance(exc, (NotFoundError, FileNotFoundError)) else 502)
            self.finish(json.dumps({"error": str(exc)}))
            return
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Disposition", f'attachment; filename="{path.rsplit("/", 1)[-1]}"')
        self.finish(buffer.getvalue())


class PeekHandler(_Handler):
    @web.authenticated
    async def get(self, kind: str, host: str, name: str) -> None:
        await self.answer(self.dashboard.peek, kind, host, name)


class ImageLogHandler(_Handler):
    @web.authenticated
    async def get(self, host: str, image_id: str) -> None:
        await self.answer(self.dashboard.image_log, host, image_id)


class ImageRebuildHandler(_Handler):
    @web.authenticated
    async def post(self, host: str, image_id: str) -> None:
        await self.answer(self.dashboard.rebuild_image, host, image_id)


class ImageHandler(_Handler):
    @web.authenticated
    async def delete(self, host: str, image_id: str) -> None:
        await self.answer(self.dashboard.remove_image, host, image_id)


def setup_handlers(web_app) -> None:
    dashboard = Dashboard()
    base = url_path_join(web_app.settings["base_url"], "nbmodal", "api")
    routes = [
        (r"/overview", OverviewHandler),
        (rf"/runs/{_NAME}/{_NAME}/log", RunLogHandler),
        (rf"/runs/{_NAME}/{_NAME}/stop", RunStopHandler),
        (rf"/containers/{_NAME}/{_NAME}/stop", ContainerStopHandler),
        (rf"/apps/{_NAME}/{_NAME}/stop", AppStopHandler),
        (rf"/volumes/{_NAME}/{_NAME}/download", VolumeDownloadHandler),
        (rf"/volumes/{_NAME}/{_NAME}", VolumeHandler),
        (rf"/(dicts|queues)/{_NAME}/{_NAME}/peek", PeekHandler),
        (rf"/images/{_NAME}/{_NAME}/log", ImageLogHandler),
        (rf"/images/{_NAME}/{_NAME}/rebuild", ImageRebuildHandler),
        (rf"/images/{_NAME}/{_NAME}", ImageHandler),
    ]
    web_app.add_handlers(".*$", [(base + pattern, handler, {"dashboard": dashboard}) for pattern, handler in routes])
    setup_proxy(web_app)  # <base_url>nbmodal/proxy/<host>/<name>/: ports served from containers
