"""Schedules without an agent: cron expressions' next times (timezones, daylight saving), periods,
``nbmodal.Cron`` / ``nbmodal.Period`` as Modal spells them, and ``schedule=`` on a function."""

from __future__ import annotations

import datetime as dt
import warnings
from zoneinfo import ZoneInfo

import pytest

import nbmodal
from nbmodal.exceptions import InvalidError, NoEffectWarning
from nbmodal_wire import pb
from nbmodal_wire.schedules import CronError, CronExpression, period_next
from remote_agent.schedules import describe_schedule, next_time

pytestmark = pytest.mark.unit

PARIS = ZoneInfo("Europe/Paris")
UTC = dt.timezone.utc


def _at(zone, *parts) -> float:
    return dt.datetime(*parts, tzinfo=zone).timestamp()


def _times(expression: str, start: float, count: int, tz: str = "UTC") -> list[dt.datetime]:
    cron, found, after = CronExpression(expression), [], start
    for _ in range(count):
        after = cron.next_after(after, tz)
        found.append(dt.datetime.fromtimestamp(after, ZoneInfo(tz)))
    return found


def test_cron_next_times_in_utc():
    start = _at(UTC, 2025, 1, 1, 10, 7, 30)
    assert [t.strftime("%H:%M") for t in _times("*/15 * * * *", start, 3)] == ["10:15", "10:30", "10:45"]
    # Weekdays at 09:30: Friday 3 Jan, then Monday 6 Jan (the weekend skipped).
    assert [t.strftime("%a %d %H:%M") for t in _times("30 9 * * mon-fri", _at(UTC, 2025, 1, 3, 9, 0), 2)] == \
        ["Fri 03 09:30", "Mon 06 09:30"]
    # Both day fields restricted: a day matching either runs (the 13th, or any Friday).
    days = [t.day for t in _times("0 0 13 * 5", _at(UTC, 2025, 6, 1), 3)]
    assert days == [6, 13, 20]
    assert _times("@monthly", _at(UTC, 2025, 1, 31, 12), 1)[0] == dt.datetime(2025, 2, 1, tzinfo=ZoneInfo("UTC"))
    # Strictly after: a time that is due now is the next one, not this one.
    assert CronExpression("0 3 * * *").next_after(_at(UTC, 2025, 1, 1, 3, 0)) == _at(UTC, 2025, 1, 2, 3, 0)


def test_cron_in_a_timezone_keeps_local_wall_time_across_dst():
    # 03:00 in Paris is 02:00 UTC in winter and 01:00 UTC in summer.
    winter, summer = _times("0 3 * * *", _at(PARIS, 2025, 3, 28, 12), 2, "Europe/Paris")  # DST: 30 March
    assert (winter.hour, summer.hour) == (3, 3)
    assert winter.astimezone(UTC).hour == 2 and summer.astimezone(UTC).hour == 1


def test_cron_spring_forward_runs_a_skipped_time_when_the_clocks_change():
    # 31 March 2024, Paris: 02:00 CET jumps to 03:00 CEST, so 02:30 never happens that day.
    (first, second) = _times("30 2 * * *", _at(PARIS, 2024, 3, 30, 12), 2, "Europe/Paris")
    assert first.isoformat() == "2024-03-31T03:00:00+02:00"  # the moment of the change (01:00 UTC)
    assert second.isoformat() == "2024-04-01T02:30:00+02:00"


def test_cron_fall_back_runs_a_repeated_time_once():
    # 27 October 2024, Paris: 03:00 CEST falls back to 02:00 CET, so 02:30 happens twice.
    times = _times("30 2 * * *", _at(PARIS, 2024, 10, 26, 12), 2, "Europe/Paris")
    assert [t.isoformat() for t in times] == ["2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00"]
    hourly = _times("0 * * * *", _at(PARIS, 2024, 10, 27, 1, 30), 3, "Europe/Paris")
    assert [t.isoformat() for t in hourly] == ["2024-10-27T02:00:00+02:00", "2024-10-27T03:00:00+01:00",
                                               "2024-10-27T04:00:00+01:00"]


@pytest.mark.parametrize("expression, named", [
    ("61 * * * *", "minute field '61': 61 is out of range 0-59"),
    ("* 24 * * *", "hour field '24'"),
    ("* * 0 * *", "day of month field '0'"),
    ("* * * 13 *", "month field '13'"),
    ("* * * * funday", "day of week field 'funday'"),
    ("*/0 * * * *", "minute field '\\*/0': the step"),
    ("5-1 * * * *", "runs backwards"),
    ("* * *", "it has 3 field\\(s\\)"),
    ("0 0 30 2 *", "no day matches"),
])
def test_an_invalid_cron_expression_names_the_field(expression, named):
    with pytest.raises(CronError, match=named):
        CronExpression(expression)
    with pytest.raises(InvalidError, match=named):  # as nbmodal.Cron says it, at decoration
        nbmodal.Cron(expression)


def test_cron_and_period_take_modal_signatures():
    cron = nbmodal.Cron("0 3 * * *", timezone="Europe/Paris")
    assert cron.to_proto() == pb.DeploySchedule(cron="0 3 * * *", timezone="Europe/Paris")
    assert nbmodal.Cron("0 3 * * *").timezone == "UTC"
    with pytest.raises(InvalidError, match="unknown timezone 'Mars/Olympus'"):
        nbmodal.Cron("0 3 * * *", timezone="Mars/Olympus")
    period = nbmodal.Period(days=1, hours=2, seconds=3)
    assert period.to_proto() == pb.DeploySchedule(period_s=86400 + 7200 + 3)
    assert nbmodal.Period(years=1, months=2).to_proto().period_months == 14
    assert repr(nbmodal.Period(hours=1)) == "Period(hours=1)"
    with pytest.raises(InvalidError, match="longer than zero"):
        nbmodal.Period()
    with pytest.raises(InvalidError, match="minutes=-1"):
        nbmodal.Period(minutes=-1)


def test_period_counts_from_the_deploy():
    assert period_next(100.0, 100.0, 10.0) == 110.0
    assert period_next(100.0, 155.0, 10.0) == 160.0
    jan31 = _at(UTC, 2025, 1, 31, 12)
    assert period_next(jan31, jan31, 0, months=1) == _at(UTC, 2025, 2, 28, 12)  # the month's last day
    assert period_next(jan31, _at(UTC, 2025, 2, 28, 12), 0, months=1) == _at(UTC, 2025, 3, 31, 12)


def test_schedules_as_listed_and_their_next_time():
    assert describe_schedule(pb.DeploySchedule(period_s=5400)) == "every 1h30m"
    assert describe_schedule(pb.DeploySchedule(period_s=2)) == "every 2s"
    assert describe_schedule(pb.DeploySchedule(cron="0 3 * * *", timezone="Europe/Paris")) == \
        "cron 0 3 * * * (Europe/Paris)"
    assert next_time(pb.DeploySchedule(period_s=60), 1000.0, 1030.0) == 1060.0
    assert next_time(pb.DeploySchedule(cron="0 * * * *"), 0.0, _at(UTC, 2025, 1, 1, 10, 5)) == \
        _at(UTC, 2025, 1, 1, 11, 0)


def test_schedule_on_a_function_is_checked_and_says_it_needs_a_deploy():
    app = nbmodal.App("schedules-unit")
    with pytest.warns(NoEffectWarning, match="only deployed functions are scheduled"):
        @app.function(schedule=nbmodal.Period(hours=1))
        def hourly():
            return 1

    assert isinstance(hourly.schedule, nbmodal.Period)
    with pytest.raises(InvalidError, match="use nbmodal.Period"):
        app.function(schedule="every day")(lambda: None)
    with pytest.raises(TypeError, match="schedule"):  # Modal takes schedule= on functions only
        app.cls(schedule=nbmodal.Period(hours=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        app.function()(lambda: None)  # no schedule: no warning


def test_the_sidebars_app_rows_are_app_infos():
    from test_sidebar_shapes import check_shape

    from nbmodal.server import dashboard

    app = pb.AppInfo(name="nightly", version="v2", deployed=True, deployed_at=1.0, functions=[
        pb.AppFunctionInfo(name="evaluate", schedule="every 1h", next_run=3600.0, last_run_id="r-00000001",
                           last_run_state=pb.SUCCEEDED, last_run_time=2.0),
        pb.AppFunctionInfo(name="Model", is_class=True)])
    row = dashboard.app_row("gpu1", app)
    check_shape(row, "AppInfo")
    assert [f["kind"] for f in row["functions"]] == ["function", "class"]
    assert row["functions"][0]["last_run_state"] == "SUCCEEDED" and row["functions"][1]["last_run_state"] == ""
    check_shape(dashboard.app_row("gpu1", pb.AppInfo(name="old", version="v1", stopped_at=5.0)), "AppInfo")
