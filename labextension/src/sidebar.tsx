// The left-area panel: a ReactWidget that renders the model's latest snapshot.
import * as React from 'react';
import { ReactWidget, refreshIcon } from '@jupyterlab/ui-components';
import type { Message } from '@lumino/messaging';

import { ActionsContext, SidebarActions } from './actions';
import { AppsSection } from './components/AppsSection';
import { ContainersSection } from './components/ContainersSection';
import { EndpointsSection } from './components/EndpointsSection';
import { CollectionsSection } from './components/CollectionsSection';
import { GpusSection } from './components/GpusSection';
import { HostsSection } from './components/HostsSection';
import { ImagesSection } from './components/ImagesSection';
import { RunsSection } from './components/RunsSection';
import { VolumesSection } from './components/VolumesSection';
import { nbmodalIcon } from './icon';
import type { SidebarModel } from './model';

export const SIDEBAR_ID = 'nbmodal-sidebar';

function useView(model: SidebarModel) {
  const subscribe = React.useCallback(
    (notify: () => void) => {
      model.changed.connect(notify);
      return () => {
        model.changed.disconnect(notify);
      };
    },
    [model]
  );
  return React.useSyncExternalStore(subscribe, () => model.view);
}

function Sidebar({ model }: { model: SidebarModel }): JSX.Element {
  const { state, revealed } = useView(model);
  const overview = state.overview;
  return (
    <div className="nbmodal-panel">
      <header className="nbmodal-header">
        <span className="nbmodal-title">nbmodal</span>
        <button
          className="nbmodal-icon-button"
          title="Refresh now"
          onClick={() => void model.refresh()}
        >
          <refreshIcon.react tag="span" />
        </button>
      </header>
      {state.error && (
        <div className="nbmodal-error nbmodal-banner" role="alert">
          {overview ? 'Not updating: ' : 'Cannot reach the nbmodal server extension: '}
          {state.error}
        </div>
      )}
      {!overview ? (
        !state.error && <div className="nbmodal-empty">Loading…</div>
      ) : (
        <div className="nbmodal-sections">
          <HostsSection hosts={overview.hosts} />
          <GpusSection gpus={overview.gpus} history={state.gpuHistory} />
          <ContainersSection containers={overview.containers} now={overview.time} />
          <EndpointsSection endpoints={overview.endpoints ?? []} />
          <AppsSection apps={overview.apps ?? []} now={overview.time} />
          <RunsSection runs={overview.runs} revealed={revealed} />
          <VolumesSection volumes={overview.volumes} />
          <CollectionsSection kind="dicts" items={overview.dicts} />
          <CollectionsSection kind="queues" items={overview.queues} />
          <ImagesSection images={overview.images} now={overview.time} />
        </div>
      )}
    </div>
  );
}

export class SidebarWidget extends ReactWidget {
  constructor(model: SidebarModel, actions: SidebarActions) {
    super();
    this._model = model;
    this._actions = actions;
    this.id = SIDEBAR_ID;
    this.addClass('nbmodal-sidebar');
    this.title.icon = nbmodalIcon;
    this.title.caption = 'nbmodal';
    this.title.label = ''; // left-area tabs show the icon; the caption is the tooltip
  }

  protected render(): JSX.Element {
    return (
      <ActionsContext.Provider value={this._actions}>
        <Sidebar model={this._model} />
      </ActionsContext.Provider>
    );
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._model.visible = true;
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this._model.visible = false;
  }

  private _model: SidebarModel;
  private _actions: SidebarActions;
}
