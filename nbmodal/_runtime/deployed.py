"""Deployed apps, from the client: ``app.deploy()`` / ``nbmodal deploy``, and calls by name.

Deploying pickles each function (and class) of the App by value, as ``.remote()`` does, resolves where
it runs (its ``host=``, else ``--host``, else placement) with its image built there, and sends each host
its part in one ``Deploy`` call; the agent keeps it (``remote_agent/deployments.py``).

``Function.from_name`` / ``Cls.from_name`` for an app not defined in this process ask the agents
(the local one, and every configured host) for the deployment, and return handles whose calls name the
deployed function (a ``DeployedRef``) instead of carrying its code: the agent supplies the stored
pickle. ``.remote/.spawn/.map/.remote_gen`` and class methods work as usual.

Example::

    app.deploy()                                               # in the notebook that defines the app
    train = nbmodal.Function.from_name("nightly", "train")     # anywhere the host is configured
    train.remote(0.1)
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from nbmodal import serialization
from nbmodal._runtime.client import CLIENT_PYTHON, AgentClient
from nbmodal._runtime.connection import CONTAINER, connection, container_connection, existing_client, in_container
from nbmodal._runtime.fanout import Retries
from nbmodal._runtime.invocation import RunOptions, resolve_target
from nbmodal._web_endpoints import web_endpoint_spec
from nbmodal.app import App, Function
from nbmodal.config import local_agent_dir
from nbmodal.exceptions import AgentLostError, InvalidError, NotFoundError
from nbmodal.hosts import LOCAL, HostError, load_hosts
from nbmodal_wire import __version__, pb
from nbmodal_wire.deployed import DeployedRef
from nbmodal_wire.names import NAME, NAME_RULE
from remote_agent.worker.classes import call_method

if TYPE_CHECKING:
    from nbmodal.cls import Cls

log = logging.getLogger(__name__)


# -- deploying ----------------------------------------------------------------


def deploy_app(app: App, name: str | None = None, host: str | None = None,
               deployed_from: str = "") -> list[tuple[str, pb.AppInfo]]:
    """Deploy ``app``'s functions and classes on the hosts they target; (host, app info) for each host.

    ``host`` is where functions and classes without a ``host=`` of their own go."""
    app_name = name or app.name
    if not app_name:
        raise InvalidError("an App needs a name to be deployed: nbmodal.App('name'), or deploy(name=...)")
    if not NAME.fullmatch(app_name) or app_name.startswith("."):
        raise InvalidError(f"app name {app_name!r} can't be deployed: use {NAME_RULE}, not starting with '.'")
    if not app.registered_functions and not app.registered_classes:
        raise InvalidError(f"app {app_name!r} has no functions or classes to deploy")
    parts: dict[str, list[pb.DeployFunction]] = {}
    clients: dict[str, AgentClient] = {}
    for key, function in app.registered_functions.items():
        target = resolve_target(host=function.host or host, spec=function.spec, image=function.image)
        parts.setdefault(target.connection.name, []).append(_function_definition(key, function, target.spec))
        clients[target.connection.name] = target.client
    for key, cls in app.registered_classes.items():
        probe = _probe(cls)
        target = resolve_target(host=probe.host or host, spec=probe.spec, image=probe.image)
        parts.setdefault(target.connection.name, []).append(_class_definition(key, cls, probe, target.spec))
        clients[target.connection.name] = target.client
    deployed = []
    for host_name, definitions in parts.items():
        request = pb.DeployRequest(app=app_name, functions=definitions, client_version=__version__,
                                   client_python=CLIENT_PYTHON, deployed_from=deployed_from)
        deployed.append((host_name, clients[host_name].deploy(request)))
    return deployed


def _function_definition(name: str, function: Function, spec: pb.ContainerSpec) -> pb.DeployFunction:
    raw = function.raw_f
    schedule = getattr(function, "schedule", None)
    return pb.DeployFunction(
        name=name, pickle=serialization.dumps(raw), spec=spec, timeout_s=function.timeout,
        schedule=schedule.to_proto() if schedule is not None else None,
        retry_delays=Retries.of(function.retries).delays(), max_containers=function.max_containers or 0,
        max_inputs=function.max_inputs, generator=inspect.isgeneratorfunction(raw) or inspect.isasyncgenfunction(raw),
        secrets=function.run_options().secrets, web=web_endpoint_spec(function))


def _probe(cls: Cls) -> Function:
    """A Function with the class's options: its spec, image, host and timeout."""
    return Function(_never_called, None, name=cls.user_cls.__name__, **cls.options)


def _never_called(*args: Any, **kwargs: Any) -> None:
    """Stands for a class while its options are resolved for a deploy; never runs."""


def _class_definition(name: str, cls: Cls, probe: Function, spec: pb.ContainerSpec) -> pb.DeployFunction:
    from nbmodal.cls import _NO_DEFAULT

    defaults = {key: field.default for key, field in cls._fields.items() if field.default is not _NO_DEFAULT}
    return pb.DeployFunction(
        name=name, is_class=True, pickle=serialization.dumps(cls.user_cls), spec=spec, timeout_s=probe.timeout,
        methods=cls.methods, parameters=list(cls.parameters),
        parameter_defaults=serialization.dumps(defaults) if defaults else b"",
        retry_delays=Retries.of(probe.retries).delays(), max_containers=probe.max_containers or 0,
        max_inputs=cls.max_concurrent_inputs or 1, secrets=probe.run_options().secrets)


def deployed_from() -> str:
    """Where a deploy comes from, for `nbmodal app history`: the notebook (Jupyter names it) or the program."""
    import os
    import sys

    return os.environ.get("JPY_SESSION_NAME") or (sys.argv[0] if sys.argv and sys.argv[0] else "")


def describe_deploy(app_name: str, deployed: list[tuple[str, pb.AppInfo]]) -> str:
    """What a deploy says: each host's version, functions and schedules."""
    import time

    lines = []
    for host_name, info in deployed:
        lines.append(f"deployed app {app_name!r} {info.version} on {host_name}:")
        for function in info.functions:
            kind = "class" if function.is_class else "function"
            line = f"  {kind} {function.name}"
            if function.schedule:
                upcoming = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(function.next_run))
                line += f"  ({function.schedule}, next {upcoming})" if function.next_run else f"  ({function.schedule})"
            lines.append(line)
    lines.append(f"call it from anywhere: nbmodal.Function.from_name({app_name!r}, NAME); "
                 f"`nbmodal app logs {app_name}`, `nbmodal app stop {app_name}`")
    return "\n".join(lines)


# -- finding ------------------------------------------------------------------


def agents_to_ask(host: str | None = None) -> list[tuple[str, AgentClient]]:
    """(name, client) of the agents that may hold deployments: ``host``, else the local agent (started when
    its state dir has deployed apps, so their schedules resume) and every reachable configured host."""
    if in_container():  # a deployed function looking up another: its own agent (its token may look up)
        return [(CONTAINER, container_connection().client())]
    if host:
        return [(host, connection(host).client())]
    found: list[tuple[str, AgentClient]] = []
    local = existing_client()
    hosts = list(load_hosts())
    if local is None and _local_has_deployments():  # its schedules resume as it starts
        local = connection(LOCAL).client()
    if local is not None:
        found.append((LOCAL, local))
    for name in hosts:
        try:
            found.append((name, connection(name).client()))
        except (HostError, AgentLostError) as exc:
            log.warning("host %s is unreachable: %s", name, exc)
    return found


def _local_has_deployments() -> bool:
    root = local_agent_dir() / "deployments"
    return root.is_dir() and any((app / "current").is_file() for app in root.iterdir())


def find_app(app_name: str) -> list[tuple[str, pb.AppInfo]]:
    """(host, info with definitions) of each agent the app is deployed on (its functions may be spread over
    several hosts); ``NotFoundError`` listing the deployed apps when it is on none."""
    asked, deployed, found = [], [], []
    for host_name, client in agents_to_ask():
        asked.append(host_name)
        try:
            found.append((host_name, client.app_call(pb.APP_LOOKUP, app_name).apps[0]))
        except NotFoundError:
            deployed += [f"{a.name} ({host_name})" for a in client.app_call(pb.APP_LIST).apps if a.deployed]
    if not found:
        raise NotFoundError(f"no app {app_name!r} is deployed on {', '.join(asked) or 'any agent'} "
                            f"(deployed apps: {', '.join(deployed) or 'none'})")
    return found


def _definition(app_name: str, name: str, want_class: bool) -> tuple[str, pb.DeployFunction, str]:
    kind, kinds = ("class", "classes") if want_class else ("function", "functions")
    where, names = [], []
    for host_name, info in find_app(app_name):
        where.append(f"{info.version} on {host_name}")
        for function in info.functions:
            if function.is_class == want_class:
                if function.name == name:
                    return host_name, function.definition, info.version
                names.append(function.name)
    raise NotFoundError(f"deployed app {app_name!r} ({', '.join(where)}) has no {kind} {name!r} "
                        f"(its {kinds}: {', '.join(names) or 'none'})")


def deployed_function(app_name: str, name: str) -> DeployedFunction:
    """The deployed function ``name`` of ``app_name``, found on an agent."""
    host_name, definition, _ = _definition(app_name, name, want_class=False)
    return DeployedFunction(app_name, name, DeployedRef(app_name, name), f"{app_name}.{name}", definition,
                            host_name)


def deployed_class(app_name: str, name: str) -> DeployedCls:
    """The deployed class ``name`` of ``app_name``, found on an agent."""
    host_name, definition, version = _definition(app_name, name, want_class=True)
    return DeployedCls(app_name, definition, host_name, version)


def deployed_app(app_name: str) -> App:
    """An App handle whose functions and classes are those deployed as ``app_name`` (on every host)."""
    app = App()
    app.name = app_name  # not registered in this process: a later lookup asks the agents again
    for host_name, info in find_app(app_name):
        for function in info.functions:
            if function.is_class:
                app.registered_classes[function.name] = DeployedCls(app_name, function.definition, host_name,
                                                                     info.version)
            else:
                app.registered_functions[function.name] = DeployedFunction(
                    app_name, function.name, DeployedRef(app_name, function.name), f"{app_name}.{function.name}",
                    function.definition, host_name)
    return app


# -- handles --------------------------------------------------------------------


def _retries(delays: list[float]) -> Retries:
    """The Retries whose delays are those stored at deploy (geometric, capped)."""
    if not delays:
        return Retries()
    first = delays[0]
    coefficient = delays[1] / first if len(delays) > 1 and first else 2.0
    return Retries(max_retries=len(delays), initial_delay=first, backoff_coefficient=coefficient or 1.0,
                   max_delay=max(delays))


class DeployedFunction(Function):
    """A deployed function, called by name: its code stays on the host (the agent supplies it)."""

    def __init__(self, app_name: str, ref: str, call: Any, label: str, definition: pb.DeployFunction,
                 host: str) -> None:
        super().__init__(call, None, name=label, host=host, timeout=definition.timeout_s or 0,
                         retries=_retries(list(definition.retry_delays)),
                         max_containers=definition.max_containers or None)
        self.spec = pb.ContainerSpec()
        self.spec.CopyFrom(definition.spec)  # its image already built on that host at deploy
        self.max_inputs = definition.max_inputs or 1
        self.deployed_app, self.deployed_name = app_name, ref
        self._definition = definition

    def with_options(self, **options: Any) -> DeployedFunction:
        """A copy with other run options: ``timeout``, ``retries``, ``max_containers``, the autoscaler's, and
        ``gpu``, ``cpu``, ``memory``, ``volumes``, ``secrets`` (added to those deployed). Its code and image
        are the deployed ones (deploy again to change them).

        Example::

            nbmodal.Function.from_name("nightly", "evaluate").with_options(gpu="H100", timeout=3600).remote()
        """
        from nbmodal._function_options import CONCURRENT_INPUTS, function_keywords

        keywords = function_keywords(options, where="Function.with_options")
        if keywords.get("image") is not None or keywords.get("host") is not None:
            raise InvalidError(f"{self.name} is deployed: its image and host are fixed at deploy; deploy the "
                               f"app again to change them")
        copy = DeployedFunction(self.deployed_app, self.deployed_name, self.raw_f, self.name, self._definition,
                                str(self.host))
        copy.spec.CopyFrom(self.spec)
        copy.timeout = float(keywords.get("timeout", self.timeout))
        copy.retries = keywords.get("retries", self.retries)
        copy.max_containers = keywords.get("max_containers", self.max_containers)
        copy.max_inputs = keywords.pop(CONCURRENT_INPUTS, None) or self.max_inputs
        resources = {key: keywords[key] for key in ("gpu", "cpu", "memory", "volumes", "secrets") if key in keywords}
        if resources:
            probe = Function(_never_called, None, name=self.name, **resources)
            if "gpu" in resources:
                copy.spec.gpu = probe.spec.gpu
            if "cpu" in resources:
                copy.spec.cpu, copy.spec.cpu_limit = probe.spec.cpu, probe.spec.cpu_limit
            if "memory" in resources:
                copy.spec.memory_mib, copy.spec.memory_limit_mib = probe.spec.memory_mib, probe.spec.memory_limit_mib
            if "volumes" in resources:
                del copy.spec.volumes[:]
                copy.spec.volumes.extend(probe.spec.volumes)
            if "secrets" in resources:
                copy._secret_sources = probe.run_options().secrets
            else:
                copy._secret_sources = getattr(self, "_secret_sources", ())
        for key, field_name in (("min_containers", "min_containers"), ("buffer_containers", "buffer_containers"),
                                ("scaledown_window", "scaledown_window_s")):
            if key in keywords:
                setattr(copy.spec, field_name, keywords[key])
        return copy

    def run_options(self, detach: bool = False) -> RunOptions:
        return dataclasses.replace(super().run_options(detach), app=self.deployed_app,
                                   deployed=(self.deployed_app, self.deployed_name))

    def local(self, *args: Any, **kwargs: Any) -> Any:
        raise InvalidError(f"{self.name} is a deployed function: its code is on the host; call it with .remote()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.local(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<nbmodal.Function {self.name} (deployed on {self.host})>"


class DeployedCls:
    """A deployed class, by name: ``Model(**params).method.remote(...)`` as with ``@app.cls``.

    Example::

        Model = nbmodal.Cls.from_name("inference", "Model")
        Model(size=2).predict.remote(x)
    """

    def __init__(self, app_name: str, definition: pb.DeployFunction, host: str, version: str) -> None:
        self.app_name, self.definition, self.host, self.version = app_name, definition, host, version
        self.name = definition.name
        self.methods = list(definition.methods)
        self.parameters = list(definition.parameters)
        self.defaults = serialization.loads(definition.parameter_defaults) if definition.parameter_defaults else {}
        self.options: dict[str, Any] = {}

    def with_options(self, **options: Any) -> DeployedCls:
        """The same deployed class with other run options for its methods (as ``Function.with_options``).

        Example::

            Model = nbmodal.Cls.from_name("inference", "Model").with_options(gpu="H100")
        """
        copy = DeployedCls(self.app_name, self.definition, self.host, self.version)
        copy.options = {**self.options, **options}
        return copy

    def __call__(self, **parameters: Any) -> DeployedClsInstance:
        unknown = set(parameters) - set(self.parameters)
        if unknown:
            raise TypeError(f"{self.name} has no parameter {', '.join(sorted(unknown))} "
                            f"(its parameters: {', '.join(self.parameters) or 'none'})")
        values = {**self.defaults, **parameters}
        missing = [name for name in self.parameters if name not in values]
        if missing:
            raise TypeError(f"{self.name}() needs a value for {', '.join(missing)}")
        return DeployedClsInstance(self, values)

    def hydrate(self, client: Any = None) -> DeployedCls:
        """Accepted for Modal code: it was looked up when made."""
        return self

    def __repr__(self) -> str:
        return f"<nbmodal.Cls {self.name} (deployed app {self.app_name!r} on {self.host})>"


class DeployedClsInstance:
    """``Model(param=...)`` of a deployed class: its methods are deployed Functions."""

    def __init__(self, cls: DeployedCls, parameters: dict[str, Any]) -> None:
        self._cls, self._parameters = cls, parameters
        # Its instance in a container is kept by this key: another version or parameters, another instance.
        key = hashlib.sha256(f"{cls.app_name}\0{cls.name}\0{cls.version}".encode()
                             + serialization.dumps(sorted(parameters.items())))
        instance_key = "d" + key.hexdigest()[:23]
        for method in cls.methods:
            # The class stays on the host: the reference unpickles to it in the container.
            ref: Any = DeployedRef(cls.app_name, cls.name)
            call = partial(call_method, ref, parameters, method, instance_key)
            function = DeployedFunction(cls.app_name, cls.name, call, f"{cls.app_name}.{cls.name}.{method}",
                                      cls.definition, cls.host)
            if cls.options:
                function = function.with_options(**cls.options)
            function.spec.env["NBMODAL_CLS_INSTANCE"] = instance_key
            setattr(self, method, function)

    def __repr__(self) -> str:
        values = ", ".join(f"{k}={v!r}" for k, v in self._parameters.items())
        return f"<{self._cls.name}({values}) deployed in {self._cls.app_name!r}>"
