// Volumes: name and size; expanding one browses its folders lazily (one listing per opened dir).
import * as React from 'react';
import {
  caretDownIcon,
  caretRightIcon,
  deleteIcon,
  downloadIcon,
  fileIcon,
  folderIcon
} from '@jupyterlab/ui-components';

import { useActions } from '../actions';
import { errorMessage, listVolume } from '../api';
import { basename, formatBytes } from '../format';
import type { VolumeEntry, VolumeInfo } from '../types';
import { Empty, Section } from './Section';
import { VolumeCopies } from './VolumeCopies';

/** A volume's root, as the agent's listdir takes it. */
const ROOT = '/';

/** The entries of one directory, listed when it is shown (so reopening shows fresh contents). */
function Listing({ host, volume, path, depth }: {
  host: string;
  volume: string;
  path: string;
  depth: number;
}): JSX.Element {
  const [entries, setEntries] = React.useState<VolumeEntry[] | null>(null);
  const [error, setError] = React.useState('');
  const [version, setVersion] = React.useState(0);
  React.useEffect(() => {
    let live = true;
    listVolume(host, volume, path).then(
      list => {
        if (live) {
          setEntries([...list].sort(byTypeThenName));
          setError('');
        }
      },
      err => live && setError(errorMessage(err))
    );
    return () => {
      live = false;
    };
  }, [host, volume, path, version]);
  const reload = React.useCallback(() => setVersion(v => v + 1), []);
  if (error) {
    return <div className="nbmodal-error nbmodal-indent" style={indent(depth)}>{error}</div>;
  }
  if (!entries) {
    return <div className="nbmodal-muted nbmodal-indent" style={indent(depth)}>Loading…</div>;
  }
  if (entries.length === 0) {
    return <div className="nbmodal-muted nbmodal-indent" style={indent(depth)}>(empty)</div>;
  }
  return (
    <>
      {entries.map(entry => (
        <EntryRow
          key={entry.path}
          host={host}
          volume={volume}
          entry={entry}
          depth={depth}
          onDeleted={reload}
        />
      ))}
    </>
  );
}

function byTypeThenName(a: VolumeEntry, b: VolumeEntry): number {
  if (a.type !== b.type) {
    return a.type === 'dir' ? -1 : 1;
  }
  return a.path.localeCompare(b.path);
}

function indent(depth: number): React.CSSProperties {
  return { paddingLeft: `${8 + depth * 14}px` };
}

function EntryRow({ host, volume, entry, depth, onDeleted }: {
  host: string;
  volume: string;
  entry: VolumeEntry;
  depth: number;
  onDeleted: () => void;
}): JSX.Element {
  const actions = useActions();
  const [open, setOpen] = React.useState(false);
  const isDir = entry.type === 'dir';
  const activate = (): void => {
    if (isDir) {
      setOpen(!open);
    } else {
      void actions.downloadVolumeFile(host, volume, entry.path);
    }
  };
  const remove = async (event: React.MouseEvent): Promise<void> => {
    event.stopPropagation();
    if (await actions.deleteVolumePath(host, volume, entry.path)) {
      onDeleted();
    }
  };
  const Icon = isDir ? (open ? caretDownIcon : caretRightIcon) : fileIcon;
  return (
    <>
      <div
        className="nbmodal-entry"
        data-path={entry.path}
        data-type={entry.type}
        style={indent(depth)}
        role="button"
        tabIndex={0}
        title={isDir ? entry.path : `${entry.path} — download`}
        onClick={activate}
        onKeyDown={event => event.key === 'Enter' && activate()}
      >
        <Icon.react tag="span" className="nbmodal-entry-icon" />
        {isDir && <folderIcon.react tag="span" className="nbmodal-entry-icon" />}
        <span className="nbmodal-ellipsis">{basename(entry.path)}</span>
        <span className="nbmodal-muted nbmodal-right">{isDir ? '' : formatBytes(entry.size)}</span>
        {!isDir && <downloadIcon.react tag="span" className="nbmodal-entry-icon nbmodal-hover" />}
        <button className="nbmodal-icon-button nbmodal-delete" title={`Delete ${entry.path}`} onClick={remove}>
          <deleteIcon.react tag="span" />
        </button>
      </div>
      {isDir && open && <Listing host={host} volume={volume} path={entry.path} depth={depth + 1} />}
    </>
  );
}

const VolumeRow = React.memo(function VolumeRow({ volume }: { volume: VolumeInfo }): JSX.Element {
  const [open, setOpen] = React.useState(false);
  const Caret = open ? caretDownIcon : caretRightIcon;
  return (
    <div className="nbmodal-row nbmodal-volume" data-volume={volume.name} data-host={volume.host}>
      <div
        className="nbmodal-row-main nbmodal-clickable"
        role="button"
        tabIndex={0}
        aria-expanded={open}
        onClick={() => setOpen(!open)}
        onKeyDown={event => event.key === 'Enter' && setOpen(!open)}
      >
        <Caret.react tag="span" className="nbmodal-caret" />
        <span className="nbmodal-name nbmodal-ellipsis">{volume.name}</span>
        <span className="nbmodal-muted">{volume.host}</span>
        <VolumeCopies volume={volume} />
        <span className="nbmodal-muted nbmodal-right">{formatBytes(volume.size)}</span>
      </div>
      {open && (
        <div className="nbmodal-tree">
          <Listing host={volume.host} volume={volume.name} path={ROOT} depth={0} />
        </div>
      )}
    </div>
  );
});

export const VolumesSection = React.memo(function VolumesSection({
  volumes
}: {
  volumes: VolumeInfo[];
}): JSX.Element {
  return (
    <Section id="volumes" title="Volumes" count={volumes.length}>
      {volumes.length === 0 ? (
        <Empty>No volumes.</Empty>
      ) : (
        volumes.map(v => <VolumeRow key={`${v.host}/${v.name}`} volume={v} />)
      )}
    </Section>
  );
});
