import { describe, expect, it } from 'vitest';

import {
  basename,
  formatAge,
  formatBytes,
  formatDuration,
  formatPercent,
  percent,
  shortId,
  sparklinePoints
} from '../format';

describe('formatBytes', () => {
  it('uses binary units with one decimal below 10', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(80 * 1024 ** 3)).toBe('80 GiB');
    expect(formatBytes(3.25 * 1024 ** 4)).toBe('3.3 TiB');
  });

  it('never shows 1024 of a unit', () => {
    expect(formatBytes(1024 * 1024 - 1)).toBe('1.0 MiB');
  });

  it('shows a dash for missing or invalid sizes', () => {
    expect(formatBytes(undefined)).toBe('–');
    expect(formatBytes(null)).toBe('–');
    expect(formatBytes(-1)).toBe('–');
    expect(formatBytes(NaN)).toBe('–');
  });
});

describe('formatDuration', () => {
  it('keeps a decimal for short runs', () => {
    expect(formatDuration(0)).toBe('0.0s');
    expect(formatDuration(0.46)).toBe('0.4s');
    expect(formatDuration(9.99)).toBe('9.9s');
  });

  it('shows the two largest units', () => {
    expect(formatDuration(42)).toBe('42s');
    expect(formatDuration(185)).toBe('3m 05s');
    expect(formatDuration(2 * 3600 + 7 * 60 + 5)).toBe('2h 07m');
    expect(formatDuration(3 * 86400 + 4 * 3600 + 59)).toBe('3d 4h');
  });

  it('shows a dash for unknown durations', () => {
    expect(formatDuration(null)).toBe('–');
    expect(formatDuration(-5)).toBe('–');
    expect(formatDuration(Infinity)).toBe('–');
  });
});

describe('formatAge', () => {
  it('measures against the given now', () => {
    expect(formatAge(1000, 1000)).toBe('just now');
    expect(formatAge(1000, 970)).toBe('30s ago');
    expect(formatAge(10_000, 10_000 - 3700)).toBe('1h 01m ago');
  });

  it('treats zero or missing as never', () => {
    expect(formatAge(1000, 0)).toBe('never');
    expect(formatAge(1000, undefined)).toBe('never');
  });
});

describe('percent', () => {
  it('is clamped to 0–100', () => {
    expect(percent(50, 200)).toBe(25);
    expect(percent(300, 200)).toBe(100);
    expect(percent(-1, 200)).toBe(0);
  });

  it('is 0 when the total is unknown', () => {
    expect(percent(5, 0)).toBe(0);
    expect(percent(5, NaN)).toBe(0);
  });

  it('formats rounded', () => {
    expect(formatPercent(42.4)).toBe('42%');
    expect(formatPercent(99.5)).toBe('100%');
    expect(formatPercent(NaN)).toBe('0%');
  });
});

describe('sparklinePoints', () => {
  it('is empty without samples', () => {
    expect(sparklinePoints([], 90, 18, 30)).toBe('');
  });

  it('maps 0 to the bottom and max to the top, newest at the right edge', () => {
    expect(sparklinePoints([0, 100], 100, 20, 2)).toBe('0,20 100,0');
    expect(sparklinePoints([0, 50, 100], 100, 20, 3)).toBe('0,20 50,10 100,0');
  });

  it('grows in from the right while the history is short', () => {
    // Capacity 11 → 10 steps of 10px; two samples occupy the last step.
    expect(sparklinePoints([10, 20], 100, 10, 11)).toBe('90,9 100,8');
  });

  it('clamps out-of-range samples', () => {
    expect(sparklinePoints([-10, 250], 10, 10, 2)).toBe('0,10 10,0');
  });
});

describe('names', () => {
  it('takes the last path segment', () => {
    expect(basename('data/train/x.csv')).toBe('x.csv');
    expect(basename('/data/train/')).toBe('train');
    expect(basename('top')).toBe('top');
  });

  it('shortens ids', () => {
    expect(shortId('0123456789abcdef')).toBe('01234567');
    expect(shortId('abc')).toBe('abc');
  });
});
