// The sidebar's live data: polls the overview, folds it into PanelState and tells the view.
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';
import type { IDisposable } from '@lumino/disposable';

import { errorMessage, fetchOverview } from './api';
import { DEFAULT_SETTINGS, SidebarSettings } from './settings';
import { EMPTY_STATE, PanelState, mergeOverview, withError } from './state';

/** A run to highlight; `seq` grows on each reveal so revealing the same run again rescrolls. */
export interface RevealedRun {
  host: string;
  run_id: string;
  seq: number;
}

/** One immutable snapshot per change, for React's useSyncExternalStore. */
export interface SidebarView {
  state: PanelState;
  revealed: RevealedRun | null;
}

/** Backed-off polls wait at most this long (a server restart is noticed within half a minute). */
const MAX_BACKOFF_MS = 30_000;

export class SidebarModel implements IDisposable {
  constructor(settings: SidebarSettings = DEFAULT_SETTINGS) {
    this._settings = settings;
    this._poll = new Poll({
      factory: () => this._tick(),
      frequency: { interval: settings.pollInterval, backoff: true, max: MAX_BACKOFF_MS },
      // Nobody looks at a collapsed sidebar or a background tab: don't query every host for it.
      standby: () => !this._visible || 'when-hidden',
      name: 'nbmodal:overview'
    });
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get view(): SidebarView {
    return this._view;
  }

  get settings(): SidebarSettings {
    return this._settings;
  }

  set settings(settings: SidebarSettings) {
    const hostsChanged = settings.hostsShown.join('\n') !== this._settings.hostsShown.join('\n');
    this._settings = settings;
    if (this._poll.frequency.interval !== settings.pollInterval) {
      this._poll.frequency = { ...this._poll.frequency, interval: settings.pollInterval };
    }
    if (hostsChanged) {
      void this.refresh();
    }
  }

  /** Whether the panel is on screen; polling stands by while it is not. */
  set visible(visible: boolean) {
    const wasVisible = this._visible;
    this._visible = visible;
    if (visible && !wasVisible) {
      void this.refresh();
    }
  }

  /** Polls now (after an action, so its effect shows without waiting for the next tick). */
  refresh(): Promise<void> {
    return this._poll.refresh();
  }

  reveal(host: string, runId: string): void {
    this._seq++;
    this._emit({ ...this._view, revealed: { host, run_id: runId, seq: this._seq } });
  }

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  dispose(): void {
    this._poll.dispose();
    Signal.clearData(this);
  }

  private async _tick(): Promise<void> {
    try {
      const overview = await fetchOverview();
      if (this.isDisposed) {
        return;
      }
      this._emit({
        ...this._view,
        state: mergeOverview(this._view.state, overview, this._settings.hostsShown)
      });
    } catch (error) {
      if (!this.isDisposed) {
        this._emit({ ...this._view, state: withError(this._view.state, errorMessage(error)) });
      }
      throw error; // rejected ticks make the Poll back off
    }
  }

  private _emit(view: SidebarView): void {
    if (view.state === this._view.state && view.revealed === this._view.revealed) {
      return;
    }
    this._view = view;
    this._changed.emit();
  }

  private _changed = new Signal<this, void>(this);
  private _poll: Poll;
  private _settings: SidebarSettings;
  private _visible = false;
  private _seq = 0;
  private _view: SidebarView = { state: EMPTY_STATE, revealed: null };
}
