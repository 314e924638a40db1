// Calls to the nbmodal server extension. Every request goes through ServerConnection so that it
// carries the token and XSRF cookie that Jupyter's server requires.
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type { Overview, RunLog, VolumeEntry } from './types';

const API_ROOT = 'nbmodal/api';

/** Builds `a/b/c` from path segments, encoding each (host, run and volume names are user data). */
export function apiPath(...segments: (string | number)[]): string {
  return segments.map(s => encodeURIComponent(String(s))).join('/');
}

function withQuery(path: string, query: Record<string, string | number>): string {
  return path + URLExt.objectToQueryString(query);
}

async function request(path: string, init: RequestInit = {}): Promise<Response> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, API_ROOT, path);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  if (!response.ok) {
    // The server reports errors as {"error": "..."}; fall back to the status line otherwise.
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && typeof body.error === 'string' && body.error) {
        message = body.error;
      }
    } catch {
      // not JSON: keep the status line
    }
    throw new ServerConnection.ResponseError(response, message);
  }
  return response;
}

/** A JSON call; an empty body (e.g. 204 after a DELETE) resolves to an empty object. */
export async function requestAPI<T>(path: string, init: RequestInit = {}): Promise<T> {
  const response = await request(path, init);
  const text = await response.text();
  return (text ? JSON.parse(text) : {}) as T;
}

export function fetchOverview(): Promise<Overview> {
  return requestAPI<Overview>('overview');
}

export function fetchRunLog(host: string, runId: string, after: number): Promise<RunLog> {
  return requestAPI<RunLog>(withQuery(apiPath('runs', host, runId, 'log'), { after }));
}

export function stopRun(host: string, runId: string): Promise<{ state: string }> {
  return requestAPI(apiPath('runs', host, runId, 'stop'), { method: 'POST' });
}

export function stopContainer(host: string, containerId: string): Promise<unknown> {
  return requestAPI(apiPath('containers', host, containerId, 'stop'), { method: 'POST' });
}

export async function listVolume(host: string, name: string, path: string): Promise<VolumeEntry[]> {
  const reply = await requestAPI<{ entries: VolumeEntry[] }>(
    withQuery(apiPath('volumes', host, name), { path })
  );
  return reply.entries ?? [];
}

export function deleteVolumePath(host: string, name: string, path: string): Promise<unknown> {
  return requestAPI(withQuery(apiPath('volumes', host, name), { path }), { method: 'DELETE' });
}

/** The file's bytes; fetched (not linked) because a plain link would not carry the token. */
export async function downloadVolumeFile(host: string, name: string, path: string): Promise<Blob> {
  const response = await request(withQuery(apiPath('volumes', host, name, 'download'), { path }));
  return response.blob();
}

export async function peek(kind: 'dicts' | 'queues', host: string, name: string): Promise<string[]> {
  const reply = await requestAPI<{ items: string[] }>(apiPath(kind, host, name, 'peek'));
  return reply.items ?? [];
}

export async function fetchImageLog(host: string, imageId: string): Promise<string> {
  const reply = await requestAPI<{ text: string }>(apiPath('images', host, imageId, 'log'));
  return reply.text ?? '';
}

export function rebuildImage(host: string, imageId: string): Promise<unknown> {
  return requestAPI(apiPath('images', host, imageId, 'rebuild'), { method: 'POST' });
}

export function deleteImage(host: string, imageId: string): Promise<unknown> {
  return requestAPI(apiPath('images', host, imageId), { method: 'DELETE' });
}

/** The message to show for a failed call. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) {
    return error.message;
  }
  return String(error);
}
