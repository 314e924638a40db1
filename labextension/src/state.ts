// Pure state of the sidebar: how each polled overview is folded into what the panel shows.
// Unchanged rows keep their object identity across polls, so memoized row components skip
// re-rendering (hundreds of finished runs stay untouched while one running run ticks).
import type { Overview, RunInfo } from './types';

/** Utilization samples kept per GPU for its sparkline (~1 minute at the default 2 s poll). */
export const GPU_HISTORY = 30;

export interface PanelState {
  /** The latest overview, filtered to the hosts shown; null until the first poll answers. */
  overview: Overview | null;
  /** Utilization samples per GPU (`gpuKey`), oldest first, at most GPU_HISTORY. */
  gpuHistory: Readonly<Record<string, readonly number[]>>;
  /** Why the last poll failed; null once one succeeds again (the last overview stays shown). */
  error: string | null;
}

export const EMPTY_STATE: PanelState = { overview: null, gpuHistory: {}, error: null };

/** A card's key: on a Slurm host the same index recurs per partition and node, so they are part of it. */
export function gpuKey(host: string, index: number, place = ''): string {
  return place ? `${host}/${place}/${index}` : `${host}/${index}`;
}

/** Where a Slurm cluster's card is (partition/node); empty for a host's own cards. */
export function gpuPlace(gpu: { partition?: string; node?: string }): string {
  return gpu.partition ? `${gpu.partition}/${gpu.node ?? ''}` : '';
}

export function runKey(host: string, runId: string): string {
  return `${host}/${runId}`;
}

/** Keeps only the rows of the hosts named; an empty list shows every host. */
export function filterByHosts(overview: Overview, hostsShown: readonly string[]): Overview {
  if (hostsShown.length === 0) {
    return overview;
  }
  const shown = new Set(hostsShown);
  const keep = <T extends { host: string }>(rows: T[] | undefined): T[] =>
    (rows ?? []).filter(row => shown.has(row.host));
  return {
    ...overview,
    hosts: (overview.hosts ?? []).filter(host => shown.has(host.name)),
    gpus: keep(overview.gpus),
    containers: keep(overview.containers),
    runs: keep(overview.runs),
    volumes: keep(overview.volumes),
    dicts: keep(overview.dicts),
    queues: keep(overview.queues),
    images: keep(overview.images),
    endpoints: keep(overview.endpoints),
    apps: keep(overview.apps)
  };
}

/** Newest first: by creation time, then by id so equal times keep a stable order. */
export function sortRuns(runs: readonly RunInfo[]): RunInfo[] {
  return [...runs].sort(
    (a, b) =>
      (b.created || 0) - (a.created || 0) ||
      (a.run_id < b.run_id ? 1 : a.run_id > b.run_id ? -1 : 0)
  );
}

/** Field-by-field equality, one level deep (rows hold scalars and small arrays like `gpus`). */
export function sameRow(a: object, b: object): boolean {
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  const keys = Object.keys(ra);
  if (keys.length !== Object.keys(rb).length) {
    return false;
  }
  return keys.every(key => {
    const x = ra[key];
    const y = rb[key];
    if (Array.isArray(x) && Array.isArray(y)) {
      return x.length === y.length && x.every((v, i) => v === y[i]);
    }
    return x === y;
  });
}

/**
 * `next` with each row replaced by its equal predecessor (same key, same fields); the previous
 * array itself when nothing changed at all, so a whole section can skip rendering.
 */
export function reuseRows<T extends object>(
  prev: readonly T[] | undefined,
  next: readonly T[],
  key: (row: T) => string
): T[] {
  if (!prev || prev.length === 0) {
    return [...next];
  }
  const byKey = new Map(prev.map(row => [key(row), row]));
  let changed = prev.length !== next.length;
  const rows = next.map((row, i) => {
    const old = byKey.get(key(row));
    const kept = old && sameRow(old, row) ? old : row;
    if (kept !== prev[i]) {
      changed = true;
    }
    return kept;
  });
  return changed ? rows : (prev as T[]);
}

/** Appends each GPU's utilization; drops histories of GPUs gone from hosts that still answer. */
export function appendGpuSamples(
  history: Readonly<Record<string, readonly number[]>>,
  overview: Overview
): Record<string, readonly number[]> {
  const next: Record<string, readonly number[]> = {};
  // A host that is briefly unreachable lists no GPUs: keep its history for when it is back.
  const unreachable = new Set(
    (overview.hosts ?? []).filter(host => !host.reachable).map(host => host.name)
  );
  for (const [key, samples] of Object.entries(history)) {
    const host = key.slice(0, key.lastIndexOf('/'));
    if (unreachable.has(host)) {
      next[key] = samples;
    }
  }
  for (const gpu of overview.gpus ?? []) {
    const key = gpuKey(gpu.host, gpu.index, gpuPlace(gpu));
    const samples = [...(history[key] ?? []), Number(gpu.utilization) || 0];
    next[key] = samples.slice(-GPU_HISTORY);
  }
  return next;
}

/** Folds a freshly polled overview into the state. */
export function mergeOverview(
  prev: PanelState,
  incoming: Overview,
  hostsShown: readonly string[]
): PanelState {
  const filtered = filterByHosts(incoming, hostsShown);
  const old = prev.overview;
  const overview: Overview = {
    time: filtered.time,
    hosts: reuseRows(old?.hosts, filtered.hosts ?? [], h => h.name),
    gpus: reuseRows(old?.gpus, filtered.gpus ?? [], g => gpuKey(g.host, g.index, gpuPlace(g))),
    containers: reuseRows(old?.containers, filtered.containers ?? [], c =>
      runKey(c.host, c.container_id)
    ),
    runs: reuseRows(old?.runs, sortRuns(filtered.runs ?? []), r => runKey(r.host, r.run_id)),
    volumes: reuseRows(old?.volumes, filtered.volumes ?? [], v => `${v.host}/${v.name}`),
    dicts: reuseRows(old?.dicts, filtered.dicts ?? [], d => `${d.host}/${d.name}`),
    queues: reuseRows(old?.queues, filtered.queues ?? [], q => `${q.host}/${q.name}`),
    endpoints: reuseRows(old?.endpoints, filtered.endpoints ?? [], e => `${e.host}/${e.tunnel_id}`),
    apps: reuseRows(old?.apps, filtered.apps ?? [], a => `${a.host}/${a.name}`),
    images: reuseRows(old?.images, filtered.images ?? [], i => `${i.host}/${i.image_id}`)
  };
  return {
    overview,
    gpuHistory: appendGpuSamples(prev.gpuHistory, filtered),
    error: null
  };
}

/** A failed poll keeps what was shown and says why. */
export function withError(prev: PanelState, message: string): PanelState {
  return prev.error === message ? prev : { ...prev, error: message };
}
