// Hosts: reachable or why not, agent version, load, memory.
import * as React from 'react';

import { formatBytes, formatPercent, percent } from '../format';
import type { HostInfo } from '../types';
import { Bar } from './Bar';
import { Empty, Section } from './Section';

const HostRow = React.memo(function HostRow({ host }: { host: HostInfo }): JSX.Element {
  if (!host.reachable) {
    // An unreachable host has no figures; its error is the one thing worth showing.
    return (
      <div className="nbmodal-row nbmodal-host" data-host={host.name} data-reachable="false">
        <div className="nbmodal-row-main">
          <span className="nbmodal-dot" data-ok="false" />
          <span className="nbmodal-name">{host.name}</span>
          <span className="nbmodal-muted">unreachable</span>
        </div>
        <div className="nbmodal-host-error" title={host.error}>
          {host.error || 'unreachable'}
        </div>
      </div>
    );
  }
  const load = host.cpus > 0 ? percent(host.load1, host.cpus) : 0;
  const memory = percent(host.memory_used, host.memory_total);
  return (
    <div className="nbmodal-row nbmodal-host" data-host={host.name} data-reachable="true">
      <div className="nbmodal-row-main">
        <span className="nbmodal-dot" data-ok="true" />
        <span className="nbmodal-name">{host.name}</span>
        <span className="nbmodal-muted" title="agent version">
          {host.agent_version ? `v${host.agent_version}` : ''}
        </span>
      </div>
      <div className="nbmodal-figures">
        <Bar
          percent={load}
          label={`load ${(host.load1 ?? 0).toFixed(2)} / ${host.cpus} CPUs`}
        />
        <Bar
          percent={memory}
          label={`mem ${formatBytes(host.memory_used)} / ${formatBytes(host.memory_total)}`}
          title={`memory ${formatPercent(memory)} used`}
        />
      </div>
    </div>
  );
});

export const HostsSection = React.memo(function HostsSection({
  hosts
}: {
  hosts: HostInfo[];
}): JSX.Element {
  return (
    <Section id="hosts" title="Hosts" count={hosts.length}>
      {hosts.length === 0 ? (
        <Empty>No hosts.</Empty>
      ) : (
        hosts.map(host => <HostRow key={host.name} host={host} />)
      )}
    </Section>
  );
});
