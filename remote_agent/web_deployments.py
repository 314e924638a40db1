"""Web endpoints of deployed apps, kept served by the agent while the app is deployed.

For each deployed function with a ``web`` spec, ``max(1, min_containers)`` serving runs are started
(``nbmodal_wire/web_serving.py``: the container runs ``serve_endpoint`` on the stored function, which
opens its tunnel under the endpoint's name, so the Jupyter proxy, ``nbmodal forward`` and the sidebar find
it as any other). A serving run that ends while its app is deployed (its container died, the server
stopped) is started again after a pause; un-deploying or redeploying cancels the runs of the old version.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from nbmodal_wire import pb
from nbmodal_wire.names import new_run_id
from nbmodal_wire.web_serving import serving_payload

if TYPE_CHECKING:
    from remote_agent.deployments import Deployment, DeploymentStore
    from remote_agent.runs import Run

log = logging.getLogger(__name__)

# A serving run that ended is started again after this long (a crash loop costs one start per period).
RESTART_AFTER_S = 5.0


class DeployedEndpoints:
    def __init__(self, store: DeploymentStore) -> None:
        self.store = store
        self._tasks: dict[str, asyncio.Task] = {}  # app -> its keeper

    def start(self, deployment: Deployment) -> None:
        """Serve the deployment's web endpoints (none: nothing to do)."""
        functions = [f for f in deployment.functions.values() if not f.is_class and f.HasField("web")]
        if not functions:
            return
        self.stop(deployment.name)
        self._tasks[deployment.name] = asyncio.ensure_future(self._keep(deployment, functions))

    def stop(self, app: str) -> None:
        task = self._tasks.pop(app, None)
        if task is not None:
            task.cancel()

    async def _keep(self, deployment: Deployment, functions: list[pb.DeployFunction]) -> None:
        runs: list[tuple[pb.DeployFunction, Run | None]] = [
            (f, None) for f in functions for _ in range(max(1, f.spec.min_containers))]
        try:
            while True:
                for i, (function, run) in enumerate(runs):
                    if run is None or run.done:
                        if run is not None:
                            self.store.app_log(deployment.name, f"endpoint {function.web.name}: run {run.id} ended "
                                                                f"({pb.RunState.Name(run.info.state)}); starting again")
                        runs[i] = (function, self._serve(deployment, function))
                await asyncio.sleep(RESTART_AFTER_S)
        finally:  # un-deployed, redeployed, or the agent stops
            for _, run in runs:
                if run is not None and not run.done:
                    self.store.agent.cancel(run, force=True)

    def _serve(self, deployment: Deployment, function: pb.DeployFunction) -> Run | None:
        request = pb.RunRequest(
            kind=pb.FUNCTION, label=f"{deployment.name}.{function.name}() serving",
            payload=serving_payload(deployment.name, function.name, function.web.name), spec=function.spec,
            timeout_s=0, detach=True, client_python=deployment.request.client_python, run_id=new_run_id(),
            app=deployment.name, deployed=pb.DeployRef(app=deployment.name, function=function.name))
        try:
            run = self.store.agent.submit(request)
        except Exception as exc:  # draining, or refused: tried again at the next turn
            log.warning("endpoint %s of %s not started: %s", function.web.name, deployment.name, exc)
            return None
        self.store.app_log(deployment.name, f"endpoint {function.web.name}: serving run {run.id}")
        return run
