// Containers: image, cards, what they serve, age, time left before a warm one scales down.
import * as React from 'react';

import { useActions } from '../actions';
import { formatDuration, shortId } from '../format';
import type { ContainerInfo } from '../types';
import { StateBadge } from './Bar';
import { TerminalButton } from './TerminalButton';
import { Empty, Section } from './Section';

function serving(container: ContainerInfo): string {
  if (container.session) {
    return `session ${container.session}`;
  }
  if (container.run_id) {
    return `run ${shortId(container.run_id)}`;
  }
  return '';
}

const ContainerRow = React.memo(function ContainerRow({
  container,
  now
}: {
  container: ContainerInfo;
  now: number;
}): JSX.Element {
  const actions = useActions();
  const [stopping, setStopping] = React.useState(false);
  const stop = async (): Promise<void> => {
    setStopping(true);
    try {
      await actions.stopContainer(container.host, container.container_id);
    } finally {
      setStopping(false);
    }
  };
  const gpus = container.gpus?.length ? `GPU ${container.gpus.join(',')}` : '';
  const idleLeft =
    container.state === 'idle' && container.idle_left_s !== null && container.idle_left_s !== undefined
      ? `scales down in ${formatDuration(Math.max(0, container.idle_left_s))}`
      : '';
  return (
    <div
      className="nbmodal-row nbmodal-container"
      data-container-id={container.container_id}
      data-host={container.host}
    >
      <div className="nbmodal-row-main">
        <StateBadge state={container.state} />
        <span className="nbmodal-name nbmodal-ellipsis" title={container.image}>
          {container.image || 'default image'}
        </span>
        <TerminalButton container={container} />
        <button
          className="nbmodal-stop jp-mod-styled"
          title="Stop this container"
          disabled={stopping}
          onClick={stop}
        >
          Stop
        </button>
      </div>
      <div className="nbmodal-details">
        <span title={`pid ${container.pid}`}>{container.host}</span>
        {gpus && <span>{gpus}</span>}
        {serving(container) && <span title={container.run_id}>{serving(container)}</span>}
        <span title="age">
          up {container.created ? formatDuration(Math.max(0, now - container.created)) : '–'}
        </span>
        {idleLeft && <span className="nbmodal-idle-left">{idleLeft}</span>}
      </div>
    </div>
  );
});

export const ContainersSection = React.memo(function ContainersSection({
  containers,
  now
}: {
  containers: ContainerInfo[];
  now: number;
}): JSX.Element {
  return (
    <Section id="containers" title="Containers" count={containers.length}>
      {containers.length === 0 ? (
        <Empty>No containers.</Empty>
      ) : (
        containers.map(c => (
          <ContainerRow key={`${c.host}/${c.container_id}`} container={c} now={now} />
        ))
      )}
    </Section>
  );
});
