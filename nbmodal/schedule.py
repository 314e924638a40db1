"""``nbmodal.Period`` and ``nbmodal.Cron``: Modal's schedules for ``@app.function(schedule=...)``.

A schedule runs a *deployed* function (``app.deploy()`` or ``nbmodal deploy``) on its host's agent, with
no notebook connected; see ``remote_agent/schedules.py``. The expression is checked here, when the
schedule is made, so a bad cron field fails at decoration.

Example::

    @app.function(schedule=nbmodal.Cron("0 3 * * *", timezone="Europe/Paris"))
    def nightly_eval(): ...

    @app.function(schedule=nbmodal.Period(hours=1))
    def refresh(): ...
"""

from __future__ import annotations

from nbmodal.exceptions import InvalidError
from nbmodal_wire import pb
from nbmodal_wire.schedules import CronError, CronExpression
from nbmodal_wire.schedules import timezone as check_timezone


class Schedule:
    """What ``schedule=`` takes: a ``Period`` or a ``Cron``."""

    def to_proto(self) -> pb.DeploySchedule:
        raise NotImplementedError


class Period(Schedule):
    """Run every fixed period, counted from the deploy (Modal's ``modal.Period``).

    ``months`` and ``years`` are calendar months (the 31st runs on the last day of shorter months).

    Example::

        @app.function(schedule=nbmodal.Period(days=1))
        def daily(): ...
    """

    def __init__(self, years: int = 0, months: int = 0, weeks: int = 0, days: int = 0, hours: int = 0,
                 minutes: int = 0, seconds: float = 0) -> None:
        values = dict(years=years, months=months, weeks=weeks, days=days, hours=hours, minutes=minutes,
                      seconds=seconds)
        for name, value in values.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise InvalidError(f"Period({name}={value!r}): each part of a Period is a number of at least 0")
        self.months = int(years) * 12 + int(months)
        self.seconds = float(((weeks * 7 + days) * 24 + hours) * 3600 + minutes * 60 + seconds)
        if self.months == 0 and self.seconds <= 0:
            raise InvalidError("Period() must be longer than zero, e.g. Period(hours=1)")
        self._given = {name: value for name, value in values.items() if value}

    def to_proto(self) -> pb.DeploySchedule:
        return pb.DeploySchedule(period_s=self.seconds, period_months=self.months)

    def __repr__(self) -> str:
        return f"Period({', '.join(f'{k}={v!r}' for k, v in self._given.items())})"


class Cron(Schedule):
    """Run at the times a cron expression names, in ``timezone`` (Modal's ``modal.Cron``).

    Five fields (minute hour day-of-month month day-of-week) or a macro (``@daily``, ``@hourly``...);
    wall-clock times in the timezone, across daylight-saving changes (a time that happens twice runs
    once; one the clocks skip runs when they change).

    Example::

        @app.function(schedule=nbmodal.Cron("0 3 * * 1-5", timezone="America/New_York"))
        def weekday_report(): ...
    """

    def __init__(self, cron_string: str, timezone: str = "UTC") -> None:
        if not isinstance(cron_string, str):
            raise InvalidError(f"Cron() takes a cron expression string, not a {type(cron_string).__name__}")
        try:
            self.expression = CronExpression(cron_string)
            check_timezone(timezone)
        except CronError as exc:
            raise InvalidError(str(exc)) from None
        self.cron_string = cron_string
        self.timezone = timezone

    def next_after(self, after: float) -> float:
        """The first time (unix seconds) after ``after`` that this schedule runs."""
        return self.expression.next_after(after, self.timezone)

    def to_proto(self) -> pb.DeploySchedule:
        return pb.DeploySchedule(cron=self.cron_string, timezone=self.timezone)

    def __repr__(self) -> str:
        return f"Cron({self.cron_string!r}, timezone={self.timezone!r})"


# Set while `nbmodal deploy` imports a file: its schedules are about to be deployed, so no warning.
deploying = False


def checked_schedule(schedule: object, function_name: str) -> Schedule | None:
    """``schedule=`` as given, checked: a ``Period`` or ``Cron`` (else ``InvalidError``). A schedule only runs
    once its app is deployed, so a function that has one says so, once, with a ``NoEffectWarning``."""
    if schedule is None:
        return None
    if not isinstance(schedule, Schedule):
        raise InvalidError(f"schedule={schedule!r} on {function_name}: use nbmodal.Period(...) or "
                           f"nbmodal.Cron('...')")
    if not deploying:
        import warnings

        from nbmodal.exceptions import NoEffectWarning

        warnings.warn(f"schedule={schedule!r} on {function_name}: only deployed functions are scheduled; "
                      f"`app.deploy()` or `nbmodal deploy` starts it on the host (until then the function runs "
                      f"only when called)", NoEffectWarning, stacklevel=5)
    return schedule
