// A run's output in the main area: follows the log endpoint (only the text after the last seq
// each time) until the run is done, with Stop while it runs.
import { MainAreaWidget } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { errorMessage, fetchRunLog, stopRun } from './api';
import { nbmodalIcon } from './icon';
import { FINAL_RUN_STATES } from './types';

/** Characters kept in the view; the front is dropped beyond this (a chatty run can print GBs). */
const MAX_CHARS = 2_000_000;
const POLL_MS = 1000;

export class RunLogView extends Widget {
  constructor(readonly host: string, readonly runId: string) {
    super();
    this.addClass('nbmodal-log-body');

    const bar = document.createElement('div');
    bar.className = 'nbmodal-log-bar';
    this._state = document.createElement('span');
    this._state.className = 'nbmodal-badge nbmodal-log-state';
    this._state.textContent = '…';
    const name = document.createElement('span');
    name.className = 'nbmodal-log-title';
    name.textContent = `${runId} on ${host}`;
    this._stop = document.createElement('button');
    this._stop.className = 'nbmodal-stop jp-mod-styled';
    this._stop.textContent = 'Stop';
    this._stop.title = 'Stop this run';
    this._stop.onclick = () => void this._stopRun();
    this._status = document.createElement('span');
    this._status.className = 'nbmodal-log-status';
    bar.append(this._state, name, this._status, this._stop);

    this._pre = document.createElement('pre');
    this._pre.className = 'nbmodal-log-text';
    this.node.append(bar, this._pre);

    this._poll = new Poll({
      factory: () => this._tick(),
      frequency: { interval: POLL_MS, backoff: true, max: 15_000 },
      standby: 'when-hidden',
      name: `nbmodal:log:${host}/${runId}`
    });
  }

  /** Whether the run is over (the log is complete). */
  get done(): boolean {
    return this._done;
  }

  dispose(): void {
    this._poll.dispose();
    super.dispose();
  }

  private async _tick(): Promise<void> {
    try {
      const log = await fetchRunLog(this.host, this.runId, this._seq);
      if (this.isDisposed) {
        return;
      }
      this._append(log.text);
      this._seq = log.last_seq ?? this._seq;
      this._setState(log.state);
      this._status.textContent = '';
      if (log.done || FINAL_RUN_STATES.has(log.state)) {
        this._finish();
      }
    } catch (error) {
      if (this.isDisposed) {
        return;
      }
      this._status.textContent = errorMessage(error);
      // An unknown run will not appear by asking again.
      if (error instanceof ServerConnection.ResponseError && error.response.status === 404) {
        this._finish();
        return;
      }
      throw error; // back off
    }
  }

  private _append(text: string): void {
    if (!text) {
      return;
    }
    const pre = this._pre;
    // Follow the end only if the reader is already there (don't yank them from what they read).
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    this._chars += text.length;
    if (this._chars > MAX_CHARS) {
      const kept = (pre.textContent + text).slice(-MAX_CHARS / 2);
      pre.textContent = `[earlier output dropped]\n${kept}`;
      this._chars = kept.length;
    } else {
      pre.appendChild(document.createTextNode(text));
    }
    if (atBottom) {
      pre.scrollTop = pre.scrollHeight;
    }
  }

  private _setState(state: string): void {
    this._state.textContent = state;
    this._state.dataset.state = state;
    this.node.dataset.state = state;
  }

  private _finish(): void {
    this._done = true;
    this._stop.hidden = true;
    this.node.dataset.done = 'true';
    this._poll.dispose();
  }

  private async _stopRun(): Promise<void> {
    this._stop.disabled = true;
    try {
      const reply = await stopRun(this.host, this.runId);
      if (reply.state) {
        this._setState(reply.state);
      }
    } catch (error) {
      this._status.textContent = `Stop failed: ${errorMessage(error)}`;
      this._stop.disabled = false;
    }
    if (!this._poll.isDisposed) {
      void this._poll.refresh();
    }
  }

  private _pre: HTMLPreElement;
  private _state: HTMLSpanElement;
  private _status: HTMLSpanElement;
  private _stop: HTMLButtonElement;
  private _poll: Poll;
  private _seq = 0;
  private _chars = 0;
  private _done = false;
}

/** Main-area ids allow only some characters; host and run names are user data. */
export function logWidgetId(host: string, runId: string): string {
  return `nbmodal-log-${host}-${runId}`.replace(/[^A-Za-z0-9_-]/g, '_');
}

export function createRunLogWidget(host: string, runId: string): MainAreaWidget<RunLogView> {
  const content = new RunLogView(host, runId);
  const widget = new MainAreaWidget({ content });
  widget.id = logWidgetId(host, runId);
  widget.addClass('nbmodal-log');
  widget.node.dataset.logRunId = runId;
  widget.node.dataset.logHost = host;
  widget.title.label = `Run ${runId.length > 12 ? runId.slice(0, 12) : runId}`;
  widget.title.caption = `nbmodal run ${runId} on ${host}`;
  widget.title.icon = nbmodalIcon;
  widget.title.closable = true;
  return widget;
}
