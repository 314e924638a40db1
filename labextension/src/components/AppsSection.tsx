// Apps: deployed apps on each host, their functions with schedules (next run) and last runs, and Stop
// (un-deploy: schedules and warm containers end, history stays). A last run opens its log view.
import * as React from 'react';
import { Notification } from '@jupyterlab/apputils';

import { confirm, useActions } from '../actions';
import { apiPath, errorMessage, requestAPI } from '../api';
import { formatAge, formatDuration, shortId } from '../format';
import type { AppFunctionInfo, AppInfo } from '../types';
import { StateBadge } from './Bar';
import { Empty, Section } from './Section';

/** When a schedule runs next, relative to the overview's time. */
function nextRun(fn: AppFunctionInfo, now: number): string {
  if (!fn.next_run) {
    return '';
  }
  const left = fn.next_run - now;
  return left <= 0 ? 'due now' : `next in ${formatDuration(Math.ceil(left))}`;
}

const AppFunctionRow = React.memo(function AppFunctionRow({
  app,
  fn,
  now
}: {
  app: AppInfo;
  fn: AppFunctionInfo;
  now: number;
}): JSX.Element {
  const actions = useActions();
  return (
    <div className="nbmodal-details nbmodal-app-function" data-function={fn.name}>
      <span title={fn.kind}>
        {fn.kind === 'class' ? 'class ' : ''}
        {fn.name}
      </span>
      {fn.schedule && (
        <span className="nbmodal-app-schedule" title={fn.schedule}>
          {fn.schedule}
        </span>
      )}
      {app.deployed && nextRun(fn, now) && <span className="nbmodal-app-next">{nextRun(fn, now)}</span>}
      {fn.last_run_id && (
        <button
          className="nbmodal-link"
          title={`open the log of ${fn.last_run_id}`}
          onClick={() => actions.openRunLog(app.host, fn.last_run_id)}
        >
          last run {shortId(fn.last_run_id)} <StateBadge state={fn.last_run_state} />{' '}
          {formatAge(now, fn.last_run_time)}
        </button>
      )}
    </div>
  );
});

const AppRow = React.memo(function AppRow({ app, now }: { app: AppInfo; now: number }): JSX.Element {
  const [stopping, setStopping] = React.useState(false);
  const stop = async (): Promise<void> => {
    const body = `Un-deploy ${app.name} on ${app.host}? Its schedules and warm containers stop; its history stays.`;
    if (!(await confirm(`Stop app ${app.name}`, body, 'Stop'))) {
      return;
    }
    setStopping(true);
    try {
      await requestAPI(apiPath('apps', app.host, app.name, 'stop'), { method: 'POST' });
    } catch (error) {
      Notification.error(`Stopping app ${app.name}: ${errorMessage(error)}`, { autoClose: 8000 });
      setStopping(false);
    }
  };
  const state = app.deployed ? 'deployed' : 'stopped';
  return (
    <div className="nbmodal-row nbmodal-app" data-app={app.name} data-host={app.host} data-state={state}>
      <div className="nbmodal-row-main">
        <StateBadge state={state} />
        <span className="nbmodal-name nbmodal-ellipsis" title={`${app.name} ${app.version}`}>
          {app.name}
        </span>
        <span className="nbmodal-app-version">{app.version}</span>
        {app.deployed && (
          <button
            className="nbmodal-stop jp-mod-styled"
            title="Un-deploy this app"
            disabled={stopping}
            onClick={stop}
          >
            Stop
          </button>
        )}
      </div>
      <div className="nbmodal-details">
        <span>{app.host}</span>
        <span title="deployed">
          {app.deployed ? 'deployed' : 'stopped'}{' '}
          {formatAge(now, app.deployed ? app.deployed_at : app.stopped_at)}
        </span>
      </div>
      {app.functions.map(fn => (
        <AppFunctionRow key={fn.name} app={app} fn={fn} now={now} />
      ))}
    </div>
  );
});

export const AppsSection = React.memo(function AppsSection({
  apps,
  now
}: {
  apps: AppInfo[];
  now: number;
}): JSX.Element {
  return (
    <Section id="apps" title="Apps" count={apps.filter(a => a.deployed).length}>
      {apps.length === 0 ? (
        <Empty>No deployed apps (app.deploy() or `nbmodal deploy FILE`).</Empty>
      ) : (
        apps.map(a => <AppRow key={`${a.host}/${a.name}`} app={a} now={now} />)
      )}
    </Section>
  );
});
