// The nbmodal JupyterLab plugin: the sidebar, its settings, the run log views and the
// reveal-run command (also reachable by clicking any data-nbmodal-run element in the page).
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { MainAreaWidget, Notification } from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { createActions } from './actions';
import { errorMessage } from './api';
import { openEndpointTab } from './endpointtab';
import { openTerminalWith } from './terminal';
import { createRunLogWidget, logWidgetId, RunLogView } from './logview';
import { SidebarModel } from './model';
import { installRunLinkHandler, REVEAL_RUN } from './reveal';
import { DEFAULT_SETTINGS, readSettings } from './settings';
import { SidebarWidget } from './sidebar';

const PLUGIN_ID = 'nbmodal-labextension:plugin';

/** The embedded agent's host name: where a run link without data-nbmodal-host points. */
const LOCAL_HOST = 'local';

const OPEN_RUN_LOG = 'nbmodal:open-run-log';
const REFRESH = 'nbmodal:refresh';

interface RunArgs {
  host: string;
  run_id: string;
}

function runArgs(args: Record<string, unknown>): RunArgs | null {
  const runId = typeof args.run_id === 'string' ? args.run_id : '';
  const host = typeof args.host === 'string' ? args.host : '';
  return runId ? { host, run_id: runId } : null;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'nbmodal sidebar: hosts, GPUs, containers, runs, volumes, dicts, queues, images',
  autoStart: true,
  optional: [ISettingRegistry, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null
  ): void => {
    const model = new SidebarModel(DEFAULT_SETTINGS);
    const logs = new Map<string, MainAreaWidget<RunLogView>>();

    const openRunLog = (host: string, runId: string): void => {
      const id = logWidgetId(host, runId);
      let widget = logs.get(id);
      if (!widget || widget.isDisposed) {
        // The first log opens beside the notebook; later ones join it as tabs.
        const sibling = [...logs.values()].find(w => !w.isDisposed && w.isAttached);
        widget = createRunLogWidget(host, runId);
        logs.set(id, widget);
        widget.disposed.connect(() => logs.delete(id));
        app.shell.add(
          widget,
          'main',
          sibling ? { ref: sibling.id, mode: 'tab-after' } : { mode: 'split-right' }
        );
      }
      app.shell.activateById(id);
    };

    const actions = createActions(openRunLog, () => void model.refresh());
    actions.openEndpoint = (url, title) => openEndpointTab(app.shell, url, title);
    actions.openTerminal = container =>
      void openTerminalWith(app.commands, container.shell_command).catch(error =>
        Notification.error(`Opening a terminal in ${container.container_id}: ${errorMessage(error)}`, {
          autoClose: 8000
        })
      );
    const sidebar = new SidebarWidget(model, actions);
    app.shell.add(sidebar, 'left', { rank: 750 });
    restorer?.add(sidebar, sidebar.id);

    app.commands.addCommand(OPEN_RUN_LOG, {
      label: 'nbmodal: Open Run Log',
      execute: args => {
        const run = runArgs(args);
        if (run) {
          openRunLog(run.host || LOCAL_HOST, run.run_id);
        }
      }
    });

    app.commands.addCommand(REVEAL_RUN, {
      label: 'nbmodal: Reveal Run',
      execute: args => {
        const run = runArgs(args);
        if (!run) {
          return;
        }
        // Without a host, take the one the overview lists the run on.
        const known = model.view.state.overview?.runs.find(r => r.run_id === run.run_id);
        const host = run.host || known?.host || LOCAL_HOST;
        app.shell.activateById(sidebar.id);
        model.reveal(host, run.run_id);
        openRunLog(host, run.run_id);
      }
    });

    app.commands.addCommand(REFRESH, {
      label: 'nbmodal: Refresh Sidebar',
      execute: () => model.refresh()
    });

    installRunLinkHandler(app.commands);

    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          model.settings = readSettings(settings);
          settings.changed.connect(() => {
            model.settings = readSettings(settings);
          });
        })
        .catch(reason => {
          console.error('nbmodal: could not load settings, using defaults', reason);
        });
    }
  }
};

export default plugin;
