// Shapes of the JSON that the nbmodal server extension serves under <baseUrl>nbmodal/api/.
// Each interface is built by one function of nbmodal/server/dashboard.py (host_row, gpu_row, ...);
// tests/test_sidebar_shapes.py checks the two against each other, keys, types and state words.

export interface HostInfo {
  name: string;
  reachable: boolean;
  error: string;
  agent_version: string;
  load1: number;
  cpus: number;
  memory_used: number;
  memory_total: number;
}

export interface GpuInfo {
  host: string;
  index: number;
  name: string;
  utilization: number;
  memory_used: number;
  memory_total: number;
  run_id: string;
  session: string;
  container_id: string;
  /** On a Slurm host: the cluster's card, by partition and node, and whether a job holds it. */
  partition?: string;
  node?: string;
  in_use?: boolean;
}

/** nbmodal_wire.states.container_state_word of the wire's ContainerState. */
export type ContainerState = 'starting' | 'idle' | 'busy' | 'exited';

export interface ContainerInfo {
  host: string;
  container_id: string;
  pid: number;
  state: ContainerState;
  image: string;
  gpus: number[];
  session: string;
  run_id: string;
  created: number;
  idle_since: number;
  idle_left_s: number | null;
}

export type RunState =
  | 'PENDING'
  | 'RUNNING'
  | 'SUCCEEDED'
  | 'FAILED'
  | 'CANCELLED'
  | 'TIMED_OUT'
  | 'LOST';

export interface RunInfo {
  host: string;
  run_id: string;
  label: string;
  state: RunState;
  created: number;
  started: number;
  finished: number;
  /** null until it started */
  duration_s: number | null;
}

export interface VolumeInfo {
  host: string;
  name: string;
  size: number;
}

/** A Dict or a Queue: both list as name and length. */
export interface CollectionInfo {
  host: string;
  name: string;
  length: number;
}

/** nbmodal_wire.states.image_state_word of the wire's ImageState. */
export type ImageState = 'building' | 'ready' | 'failed';

export interface ImageInfo {
  host: string;
  image_id: string;
  name: string;
  state: ImageState;
  size_bytes: number;
  created: number;
  last_used: number;
  python: string;
  error: string;
}

export interface Overview {
  hosts: HostInfo[];
  gpus: GpuInfo[];
  containers: ContainerInfo[];
  runs: RunInfo[];
  volumes: VolumeInfo[];
  dicts: CollectionInfo[];
  queues: CollectionInfo[];
  images: ImageInfo[];
  time: number;
}

export interface RunLog {
  text: string;
  last_seq: number;
  state: RunState | string;
  done: boolean;
}

export interface VolumeEntry {
  path: string;
  type: 'file' | 'dir' | 'symlink';
  size: number;
  mtime: number;
}

/** Runs that are over: their log no longer grows and Stop makes no sense. */
export const FINAL_RUN_STATES: ReadonlySet<string> = new Set([
  'SUCCEEDED',
  'FAILED',
  'CANCELLED',
  'TIMED_OUT',
  'LOST'
]);
