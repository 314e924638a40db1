// What the sidebar's buttons do: the API call, a confirmation where data is lost, a toast on
// failure, and a refresh so the change shows at once. Rows get these through React context.
import * as React from 'react';
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';

import * as api from './api';
import { showImageLog } from './imagelog';
import type { ContainerInfo, ImageInfo } from './types';

export interface SidebarActions {
  openRunLog(host: string, runId: string): void;
  stopRun(host: string, runId: string): Promise<void>;
  stopContainer(host: string, containerId: string): Promise<void>;
  showImageLog(image: ImageInfo): void;
  rebuildImage(image: ImageInfo): Promise<void>;
  deleteImage(image: ImageInfo): Promise<void>;
  /** Asks first; true when the path was deleted. */
  deleteVolumePath(host: string, volume: string, path: string): Promise<boolean>;
  downloadVolumeFile(host: string, volume: string, path: string): Promise<void>;
  /** Opens a served endpoint's page in a JupyterLab tab (set by the plugin: it needs the shell). */
  openEndpoint?(url: string, title: string): void;
  /** Opens a JupyterLab terminal with a shell in the container (set by the plugin: it needs the commands). */
  openTerminal?(container: ContainerInfo): void;
}

/** Asks the user; true when they confirmed. */
export async function confirm(title: string, body: string, label: string): Promise<boolean> {
  const result = await showDialog({
    title,
    body,
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label })]
  });
  return result.button.accept;
}

/** Runs an action, reporting a failure as a notification instead of an unhandled rejection. */
async function attempt(what: string, action: () => Promise<unknown>): Promise<boolean> {
  try {
    await action();
    return true;
  } catch (error) {
    Notification.error(`${what}: ${api.errorMessage(error)}`, { autoClose: 8000 });
    return false;
  }
}

/** Saves a blob under `filename` through a temporary object URL. */
function saveBlob(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  // Revoke later: some browsers start reading the URL only after click() returns.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

export function createActions(
  openRunLog: (host: string, runId: string) => void,
  refresh: () => void
): SidebarActions {
  return {
    openRunLog,
    async stopRun(host, runId) {
      await attempt(`Stopping run ${runId}`, () => api.stopRun(host, runId));
      refresh();
    },
    async stopContainer(host, containerId) {
      await attempt(`Stopping container ${containerId}`, () =>
        api.stopContainer(host, containerId)
      );
      refresh();
    },
    showImageLog(image) {
      showImageLog(image);
    },
    async rebuildImage(image) {
      await attempt(`Rebuilding image ${image.name}`, () =>
        api.rebuildImage(image.host, image.image_id)
      );
      refresh();
    },
    async deleteImage(image) {
      if (
        !(await confirm(
          'Delete image',
          `Delete image "${image.name}" (${image.image_id}) on ${image.host}?`,
          'Delete'
        ))
      ) {
        return;
      }
      await attempt(`Deleting image ${image.name}`, () =>
        api.deleteImage(image.host, image.image_id)
      );
      refresh();
    },
    async deleteVolumePath(host, volume, path) {
      if (!(await confirm('Delete from volume', `Delete "${path}" from volume "${volume}" on ${host}?`, 'Delete'))) {
        return false;
      }
      const ok = await attempt(`Deleting ${path}`, () => api.deleteVolumePath(host, volume, path));
      refresh();
      return ok;
    },
    async downloadVolumeFile(host, volume, path) {
      await attempt(`Downloading ${path}`, async () => {
        const blob = await api.downloadVolumeFile(host, volume, path);
        saveBlob(blob, path.split('/').pop() || volume);
      });
    }
  };
}

/** Set by the sidebar; rows read it instead of taking callbacks as props (keeps memo cheap). */
export const ActionsContext = React.createContext<SidebarActions | null>(null);

export function useActions(): SidebarActions {
  const actions = React.useContext(ActionsContext);
  if (!actions) {
    throw new Error('nbmodal: sidebar actions are not provided');
  }
  return actions;
}
