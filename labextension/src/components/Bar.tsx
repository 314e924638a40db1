// Small inline charts: a horizontal fill bar and a utilization sparkline.
import * as React from 'react';

import { sparklinePoints } from '../format';
import { GPU_HISTORY } from '../state';

export interface BarProps {
  /** 0–100 */
  percent: number;
  label: string;
  title?: string;
}

/** A fill bar with its figure over it; the fill turns warn/error colored when nearly full. */
export const Bar = React.memo(function Bar({ percent, label, title }: BarProps): JSX.Element {
  const level = percent >= 90 ? 'high' : percent >= 70 ? 'mid' : 'low';
  return (
    <div className="nbmodal-bar" data-level={level} title={title ?? label}>
      <div className="nbmodal-bar-fill" style={{ width: `${percent}%` }} />
      <span className="nbmodal-bar-label">{label}</span>
    </div>
  );
});

const SPARK_WIDTH = 90;
const SPARK_HEIGHT = 18;

export const Sparkline = React.memo(function Sparkline({
  samples
}: {
  samples: readonly number[];
}): JSX.Element {
  return (
    <svg
      className="nbmodal-sparkline"
      width={SPARK_WIDTH}
      height={SPARK_HEIGHT}
      viewBox={`0 0 ${SPARK_WIDTH} ${SPARK_HEIGHT}`}
      preserveAspectRatio="none"
      aria-label="utilization history"
    >
      <polyline points={sparklinePoints(samples, SPARK_WIDTH, SPARK_HEIGHT, GPU_HISTORY)} />
    </svg>
  );
});

/** A state label whose color comes from CSS by its value. */
export function StateBadge({ state, className }: { state: string; className?: string }): JSX.Element {
  return (
    <span className={`nbmodal-badge ${className ?? ''}`} data-state={state}>
      {state}
    </span>
  );
}
