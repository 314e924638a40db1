// Pure display helpers: no DOM, no JupyterLab imports, so they are unit-tested directly.

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** `1536` → `1.5 KiB`; one decimal below 10 units, none above (a column of sizes stays narrow). */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes) || bytes < 0) {
    return '–';
  }
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) {
    return `${Math.round(value)} B`;
  }
  const digits = value < 10 ? 1 : 0;
  // 1023.96 KiB would round to "1024 KiB": show the next unit instead.
  if (Number(value.toFixed(digits)) >= 1024 && unit < BYTE_UNITS.length - 1) {
    return `1.0 ${BYTE_UNITS[unit + 1]}`;
  }
  return `${value.toFixed(digits)} ${BYTE_UNITS[unit]}`;
}

/** Seconds as the two largest units: `0.4s`, `42s`, `3m 05s`, `2h 07m`, `3d 4h`. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) {
    return '–';
  }
  if (seconds < 10) {
    // Short runs are common (a quick cell): keep a decimal so they don't all read "0s".
    return `${(Math.floor(seconds * 10) / 10).toFixed(1)}s`;
  }
  const s = Math.floor(seconds);
  if (s < 60) {
    return `${s}s`;
  }
  const pad = (n: number): string => String(n).padStart(2, '0');
  const m = Math.floor(s / 60);
  if (m < 60) {
    return `${m}m ${pad(s % 60)}s`;
  }
  const h = Math.floor(m / 60);
  if (h < 24) {
    return `${h}h ${pad(m % 60)}m`;
  }
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/**
 * How long ago `then` was, both unix seconds; `now` comes from the overview's own `time` so ages
 * don't drift with the browser's clock. `0`/missing means "never".
 */
export function formatAge(now: number, then: number | null | undefined): string {
  if (!then || !Number.isFinite(then) || then <= 0) {
    return 'never';
  }
  const delta = now - then;
  if (delta < 1) {
    return 'just now';
  }
  return `${formatDuration(Math.floor(delta))} ago`;
}

/** `used/total` as a percentage clamped to 0–100; 0 when the total is unknown. */
export function percent(used: number, total: number): number {
  if (!Number.isFinite(used) || !Number.isFinite(total) || total <= 0) {
    return 0;
  }
  return Math.min(100, Math.max(0, (used / total) * 100));
}

/** `42.4` → `42%`. */
export function formatPercent(value: number): string {
  return `${Math.round(Number.isFinite(value) ? value : 0)}%`;
}

/**
 * SVG polyline points for a sparkline of `samples` (0–`max`) in a `width`×`height` box: the
 * newest sample sits at the right edge and a full history of `capacity` spans the width, so a
 * short history grows in from the right instead of stretching.
 */
export function sparklinePoints(
  samples: readonly number[],
  width: number,
  height: number,
  capacity: number = samples.length,
  max = 100
): string {
  if (samples.length === 0 || width <= 0 || height <= 0 || max <= 0) {
    return '';
  }
  const slots = Math.max(capacity, samples.length, 2) - 1;
  const step = width / slots;
  const start = width - step * (samples.length - 1);
  const round = (n: number): number => Math.round(n * 10) / 10;
  return samples
    .map((value, i) => {
      const clamped = Math.min(max, Math.max(0, Number.isFinite(value) ? value : 0));
      const x = start + step * i;
      const y = height - (clamped / max) * height;
      return `${round(x)},${round(y)}`;
    })
    .join(' ');
}

/** The last path segment (`a/b/c.txt` → `c.txt`), for tree rows that show only their own name. */
export function basename(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  const slash = trimmed.lastIndexOf('/');
  return slash < 0 ? trimmed : trimmed.slice(slash + 1);
}

/** A short form of a long id for a narrow column: `abcdef123456` → `abcdef12`. */
export function shortId(id: string, length = 8): string {
  return id.length > length ? id.slice(0, length) : id;
}
