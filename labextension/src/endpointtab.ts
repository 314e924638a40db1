// A served endpoint's page in a JupyterLab main-area tab: an iframe on the Jupyter proxy's URL.
import { MainAreaWidget } from '@jupyterlab/apputils';
import { IFrame } from '@jupyterlab/ui-components';
import type { Widget } from '@lumino/widgets';

/** What the shell needs to show a tab (JupyterFrontEnd's shell has these). */
export interface Shell {
  add(widget: Widget, area?: string, options?: Record<string, unknown>): void;
  activateById(id: string): void;
}

const tabs = new Map<string, MainAreaWidget<IFrame>>();

/** The tab's id for a URL: one tab per endpoint, reused when opened again. */
export function endpointTabId(url: string): string {
  let hash = 0;
  for (let i = 0; i < url.length; i++) {
    hash = (hash * 31 + url.charCodeAt(i)) | 0;
  }
  return `nbmodal-endpoint-${(hash >>> 0).toString(16)}`;
}

export function openEndpointTab(shell: Shell, url: string, title: string): void {
  const id = endpointTabId(url);
  let widget = tabs.get(id);
  if (!widget || widget.isDisposed) {
    // Same origin as JupyterLab (the proxy is under its base URL): scripts, forms and popups may run.
    const frame = new IFrame({
      sandbox: ['allow-scripts', 'allow-same-origin', 'allow-forms', 'allow-popups', 'allow-downloads', 'allow-modals']
    });
    frame.url = url;
    frame.addClass('nbmodal-endpoint-frame');
    widget = new MainAreaWidget({ content: frame });
    widget.id = id;
    widget.title.label = title;
    widget.title.caption = url;
    widget.title.closable = true;
    tabs.set(id, widget);
    widget.disposed.connect(() => tabs.delete(id));
    shell.add(widget, 'main', { mode: 'split-right' });
  }
  shell.activateById(id);
}
