// A volume's copies across hosts (issue 18): its committed version at the home, and each replica's.
import * as React from 'react';

import type { VolumeInfo } from '../types';

/** "v7" at the home; for each replica "gpu2 v7", "gpu2 v5 (behind)" or "gpu2 v7 (uncommitted writes)". */
export function VolumeCopies({ volume }: { volume: VolumeInfo }): JSX.Element {
  const replicas = volume.replicas.map(r => {
    const state = r.pending ? ' (uncommitted writes)' : r.version < volume.version ? ' (behind)' : '';
    return `${r.host} v${r.version}${state}`;
  });
  const where =
    volume.role === 'replica'
      ? `replica of ${volume.home} (home not answering)${volume.pending ? ', uncommitted writes' : ''}`
      : `home ${volume.home}` + (replicas.length ? `; replicas: ${replicas.join(', ')}` : '; no replicas');
  return (
    <span
      className="nbmodal-muted nbmodal-volume-copies"
      data-version={volume.version}
      data-replicas={volume.replicas.map(r => r.host).join(',')}
      title={`version ${volume.version}: ${where}`}
    >
      v{volume.version}
      {volume.replicas.length > 0 && ` · ${volume.replicas.length} replica${volume.replicas.length > 1 ? 's' : ''}`}
    </span>
  );
}
