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
  kind: string; // "sandbox" for a Sandbox's container, else "function"
  sandbox_id: string;
  shell_command: string; // `nbmodal shell --host H ID`, as the sidebar's Open terminal types it
}

export type RunState =
  | 'PENDING'
  | 'RUNNING'
  | 'WAITING_FOR_DEBUGGER'
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
  /** a multi-node gang (issue 20): one row, its ranks' runs in members */
  cluster_id?: string;
  members?: RunMember[];
}

/** One rank of a multi-node gang's run. */
export interface RunMember {
  host: string;
  run_id: string;
  rank: number;
  state: RunState;
}

/** A volume at its home host; its replicas on other hosts are inside (issue 18). */
export interface VolumeInfo {
  host: string;
  name: string;
  size: number;
  /** the home host; a replica row whose home didn't answer has its own row */
  home: string;
  role: 'home' | 'replica';
  /** the committed version this copy has */
  version: number;
  /** a replica's writes not yet committed to the home */
  pending: boolean;
  replicas: VolumeReplica[];
}

export interface VolumeReplica {
  host: string;
  version: number;
  pending: boolean;
}

/** A Dict or a Queue: both list as name and length, at their home host. */
export interface CollectionInfo {
  host: string;
  name: string;
  length: number;
  home: string;
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
  endpoints: EndpointInfo[];
  apps: AppInfo[];
  time: number;
}

/** A deployed app on one host (app_row): its version, and its functions with schedules and runs. */
export interface AppInfo {
  host: string;
  name: string;
  version: string;
  /** false once stopped (`nbmodal app stop`): listed for its history */
  deployed: boolean;
  deployed_at: number;
  stopped_at: number;
  functions: AppFunctionInfo[];
}

export interface AppFunctionInfo {
  name: string;
  kind: 'function' | 'class';
  /** "every 1h", "cron 0 3 * * * (Europe/Paris)"; empty: none */
  schedule: string;
  /** unix seconds; 0: none */
  next_run: number;
  last_run_id: string;
  last_run_state: RunState | '';
  last_run_time: number;
}

/** A port served from a container (nbmodal.forward, a web endpoint), reached through the Jupyter proxy. */
export type EndpointState = 'serving' | 'ended';

export interface EndpointInfo {
  host: string;
  tunnel_id: string;
  name: string;
  label: string;
  kind: string;
  port: number;
  run_id: string;
  container_id: string;
  state: EndpointState;
  ended: string;
  created: number;
  /** Relative to the Jupyter server's base URL: nbmodal/proxy/<host>/<name>/ */
  path: string;
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
