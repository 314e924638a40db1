// GPUs: per card utilization and memory, a sparkline of recent utilization, and who holds it.
import * as React from 'react';

import { formatBytes, formatPercent, percent, shortId } from '../format';
import { gpuKey, gpuPlace } from '../state';
import type { GpuInfo } from '../types';
import { Bar, Sparkline } from './Bar';
import { Empty, Section } from './Section';

function holder(gpu: GpuInfo): string {
  if (gpu.session) {
    return `session ${gpu.session}`;
  }
  if (gpu.run_id) {
    return `run ${shortId(gpu.run_id)}`;
  }
  if (gpu.container_id) {
    return `warm container ${shortId(gpu.container_id)}`;
  }
  if (gpu.partition) {
    return gpu.in_use ? 'a Slurm job' : 'free';
  }
  return 'free';
}

const GpuRow = React.memo(function GpuRow({
  gpu,
  samples
}: {
  gpu: GpuInfo;
  samples: readonly number[];
}): JSX.Element {
  const memory = percent(gpu.memory_used, gpu.memory_total);
  const busy = Boolean(gpu.run_id || gpu.session || gpu.container_id || gpu.in_use);
  const place = gpuPlace(gpu);
  return (
    <div className="nbmodal-row nbmodal-gpu" data-gpu={gpuKey(gpu.host, gpu.index, place)}>
      <div className="nbmodal-row-main">
        <span className="nbmodal-name">
          {gpu.host}:{place ? `${place}:` : ''}
          {gpu.index}
        </span>
        <span className="nbmodal-muted nbmodal-ellipsis" title={gpu.name}>
          {gpu.name}
        </span>
      </div>
      {place ? null : (
      <div className="nbmodal-figures">
        <div className="nbmodal-util">
          <Bar percent={percent(gpu.utilization, 100)} label={`util ${formatPercent(gpu.utilization)}`} />
          <Sparkline samples={samples} />
        </div>
        <Bar
          percent={memory}
          label={`mem ${formatBytes(gpu.memory_used)} / ${formatBytes(gpu.memory_total)}`}
        />
      </div>
      )}
      <div className="nbmodal-holder" data-busy={busy} title={gpu.run_id || gpu.container_id}>
        {holder(gpu)}
      </div>
    </div>
  );
});

export const GpusSection = React.memo(function GpusSection({
  gpus,
  history
}: {
  gpus: GpuInfo[];
  history: Readonly<Record<string, readonly number[]>>;
}): JSX.Element {
  return (
    <Section id="gpus" title="GPUs" count={gpus.length}>
      {gpus.length === 0 ? (
        <Empty>No GPUs.</Empty>
      ) : (
        gpus.map(gpu => {
          const key = gpuKey(gpu.host, gpu.index, gpuPlace(gpu));
          return <GpuRow key={key} gpu={gpu} samples={history[key] ?? []} />;
        })
      )}
    </Section>
  );
});
