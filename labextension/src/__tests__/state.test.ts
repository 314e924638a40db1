import { describe, expect, it } from 'vitest';

import {
  EMPTY_STATE,
  GPU_HISTORY,
  appendGpuSamples,
  filterByHosts,
  mergeOverview,
  reuseRows,
  sameRow,
  sortRuns,
  withError
} from '../state';
import type { GpuInfo, HostInfo, Overview, RunInfo } from '../types';

function host(name: string, reachable = true): HostInfo {
  return {
    name,
    reachable,
    error: reachable ? '' : 'ssh: connect timed out',
    agent_version: '0.1.0',
    load1: 0.5,
    cpus: 8,
    memory_used: 1,
    memory_total: 2
  };
}

function gpu(hostName: string, index: number, utilization: number): GpuInfo {
  return {
    host: hostName,
    index,
    name: 'NVIDIA H100 80GB HBM3',
    utilization,
    memory_used: 0,
    memory_total: 80,
    run_id: '',
    session: '',
    container_id: ''
  };
}

function run(hostName: string, id: string, created: number, state: RunInfo['state'] = 'SUCCEEDED'): RunInfo {
  return {
    host: hostName,
    run_id: id,
    label: id,
    state,
    created,
    started: created,
    finished: created + 1,
    duration_s: 1
  };
}

function overview(parts: Partial<Overview> = {}): Overview {
  return {
    hosts: [],
    gpus: [],
    containers: [],
    runs: [],
    volumes: [],
    dicts: [],
    queues: [],
    images: [],
    endpoints: [],
    time: 1000,
    ...parts
  };
}

describe('sortRuns', () => {
  it('puts the newest first and breaks ties by id', () => {
    const sorted = sortRuns([run('a', 'r1', 10), run('a', 'r3', 30), run('b', 'r2', 30), run('a', 'r0', 20)]);
    expect(sorted.map(r => r.run_id)).toEqual(['r3', 'r2', 'r0', 'r1']);
  });

  it('does not mutate its input', () => {
    const runs = [run('a', 'r1', 10), run('a', 'r2', 20)];
    sortRuns(runs);
    expect(runs.map(r => r.run_id)).toEqual(['r1', 'r2']);
  });
});

describe('filterByHosts', () => {
  const full = overview({
    hosts: [host('a'), host('b')],
    gpus: [gpu('a', 0, 1), gpu('b', 0, 2)],
    runs: [run('a', 'r1', 1), run('b', 'r2', 2)],
    volumes: [{ host: 'b', name: 'data', size: 1 }]
  });

  it('shows everything when the list is empty', () => {
    expect(filterByHosts(full, [])).toBe(full);
  });

  it('keeps only the rows of the hosts named', () => {
    const only = filterByHosts(full, ['a']);
    expect(only.hosts.map(h => h.name)).toEqual(['a']);
    expect(only.gpus.map(g => g.host)).toEqual(['a']);
    expect(only.runs.map(r => r.run_id)).toEqual(['r1']);
    expect(only.volumes).toEqual([]);
  });
});

describe('reuseRows', () => {
  const key = (r: RunInfo): string => `${r.host}/${r.run_id}`;

  it('returns the previous array when nothing changed', () => {
    const prev = [run('a', 'r1', 1), run('a', 'r2', 2)];
    const next = prev.map(r => ({ ...r }));
    expect(reuseRows(prev, next, key)).toBe(prev);
  });

  it('keeps unchanged rows and replaces changed ones', () => {
    const prev = [run('a', 'r1', 1, 'RUNNING'), run('a', 'r2', 2)];
    const next = [{ ...prev[0], state: 'SUCCEEDED' as const }, { ...prev[1] }];
    const merged = reuseRows(prev, next, key);
    expect(merged).not.toBe(prev);
    expect(merged[0]).toBe(next[0]);
    expect(merged[1]).toBe(prev[1]);
  });

  it('notices a reordering or a new row', () => {
    const prev = [run('a', 'r1', 1), run('a', 'r2', 2)];
    const swapped = reuseRows(prev, [prev[1], prev[0]], key);
    expect(swapped).not.toBe(prev);
    expect(swapped[0]).toBe(prev[1]);
    const grown = reuseRows(prev, [run('a', 'r3', 3), ...prev], key);
    expect(grown).toHaveLength(3);
  });

  it('compares arrays in rows by value', () => {
    expect(sameRow({ gpus: [0, 1] }, { gpus: [0, 1] })).toBe(true);
    expect(sameRow({ gpus: [0, 1] }, { gpus: [1] })).toBe(false);
    expect(sameRow({ a: 1 }, { a: 1, b: 2 })).toBe(false);
  });
});

describe('appendGpuSamples', () => {
  it('appends and caps the history', () => {
    let history = {};
    for (let i = 0; i < GPU_HISTORY + 5; i++) {
      history = appendGpuSamples(history, overview({ hosts: [host('a')], gpus: [gpu('a', 0, i)] }));
    }
    const samples = (history as Record<string, number[]>)['a/0'];
    expect(samples).toHaveLength(GPU_HISTORY);
    expect(samples[0]).toBe(5);
    expect(samples[GPU_HISTORY - 1]).toBe(GPU_HISTORY + 4);
  });

  it('keeps an unreachable host’s history but drops GPUs gone from a reachable host', () => {
    const history = { 'a/0': [1, 2], 'b/0': [3], 'b/1': [4] };
    const next = appendGpuSamples(
      history,
      overview({ hosts: [host('a', false), host('b')], gpus: [gpu('b', 0, 5)] })
    );
    expect(next).toEqual({ 'a/0': [1, 2], 'b/0': [3, 5] });
  });
});

describe('mergeOverview', () => {
  it('sorts runs, filters hosts, records GPU samples and clears the error', () => {
    const failed = withError(EMPTY_STATE, 'boom');
    const state = mergeOverview(
      failed,
      overview({
        hosts: [host('a'), host('b', false)],
        gpus: [gpu('a', 0, 40), gpu('c', 0, 99)],
        runs: [run('a', 'old', 1), run('a', 'new', 2), run('c', 'other', 3)]
      }),
      ['a', 'b']
    );
    expect(state.error).toBeNull();
    expect(state.overview?.runs.map(r => r.run_id)).toEqual(['new', 'old']);
    expect(state.overview?.hosts.map(h => [h.name, h.reachable])).toEqual([
      ['a', true],
      ['b', false]
    ]);
    expect(state.gpuHistory).toEqual({ 'a/0': [40] });
  });

  it('keeps row identity across polls so memoized rows skip rendering', () => {
    const first = mergeOverview(
      EMPTY_STATE,
      overview({ runs: [run('a', 'r1', 1), run('a', 'r2', 2, 'RUNNING')], hosts: [host('a')] }),
      []
    );
    const second = mergeOverview(
      first,
      overview({
        time: 1002,
        runs: [run('a', 'r1', 1), { ...run('a', 'r2', 2, 'RUNNING'), duration_s: 3 }],
        hosts: [host('a')]
      }),
      []
    );
    expect(second.overview?.hosts).toBe(first.overview?.hosts);
    expect(second.overview?.runs).not.toBe(first.overview?.runs);
    expect(second.overview?.runs[1]).toBe(first.overview?.runs[1]); // r1, unchanged
    expect(second.overview?.runs[0].duration_s).toBe(3);
  });

  it('tolerates missing lists in a partial overview', () => {
    const state = mergeOverview(EMPTY_STATE, { hosts: [host('a')], time: 5 } as Overview, []);
    expect(state.overview?.runs).toEqual([]);
    expect(state.overview?.images).toEqual([]);
  });
});

describe('withError', () => {
  it('keeps the last overview and returns the same state for the same error', () => {
    const state = mergeOverview(EMPTY_STATE, overview({ hosts: [host('a')] }), []);
    const failed = withError(state, 'offline');
    expect(failed.overview).toBe(state.overview);
    expect(failed.error).toBe('offline');
    expect(withError(failed, 'offline')).toBe(failed);
  });
});

describe('Slurm cluster cards', () => {
  it('keeps cards of different partitions and nodes apart', async () => {
    const { gpuKey, gpuPlace } = await import('../state');
    const a = { partition: 'gpu', node: 'n1' };
    const b = { partition: 'gpu', node: 'n2' };
    expect(gpuKey('slurm', 0, gpuPlace(a))).not.toEqual(gpuKey('slurm', 0, gpuPlace(b)));
    expect(gpuKey('local', 0, gpuPlace({}))).toEqual('local/0');
  });
});
