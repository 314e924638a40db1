// The user settings of the sidebar (schema/plugin.json), read into a plain typed object.
import type { ISettingRegistry } from '@jupyterlab/settingregistry';

export interface SidebarSettings {
  /** Milliseconds between overview polls (the server's schema enforces the minimum too). */
  pollInterval: number;
  /** Host names to show; empty shows every host. */
  hostsShown: string[];
}

export const MIN_POLL_INTERVAL = 500;

export const DEFAULT_SETTINGS: SidebarSettings = { pollInterval: 2000, hostsShown: [] };

export function readSettings(settings: ISettingRegistry.ISettings): SidebarSettings {
  const interval = Number(settings.get('pollInterval').composite);
  const hosts = settings.get('hostsShown').composite;
  return {
    pollInterval: Number.isFinite(interval)
      ? Math.max(MIN_POLL_INTERVAL, interval)
      : DEFAULT_SETTINGS.pollInterval,
    hostsShown: Array.isArray(hosts) ? hosts.filter((h): h is string => typeof h === 'string') : []
  };
}
