// Dicts and Queues: name and length; expanding one peeks at its first items.
import * as React from 'react';
import { caretDownIcon, caretRightIcon } from '@jupyterlab/ui-components';

import { errorMessage, peek } from '../api';
import type { CollectionInfo } from '../types';
import { Empty, Section } from './Section';

type Kind = 'dicts' | 'queues';

/** The peeked items; peeks again when the length changes while open. */
function Peek({ kind, item }: { kind: Kind; item: CollectionInfo }): JSX.Element {
  const [items, setItems] = React.useState<string[] | null>(null);
  const [error, setError] = React.useState('');
  React.useEffect(() => {
    let live = true;
    peek(kind, item.host, item.name).then(
      list => {
        if (live) {
          setItems(list);
          setError('');
        }
      },
      err => live && setError(errorMessage(err))
    );
    return () => {
      live = false;
    };
  }, [kind, item.host, item.name, item.length]);
  if (error) {
    return <div className="nbmodal-error">{error}</div>;
  }
  if (!items) {
    return <div className="nbmodal-muted">Loading…</div>;
  }
  if (items.length === 0) {
    return <div className="nbmodal-muted">(empty)</div>;
  }
  return (
    <ol className="nbmodal-peek" start={kind === 'queues' ? 1 : undefined}>
      {items.map((repr, i) => (
        <li key={i}>
          <code>{repr}</code>
        </li>
      ))}
      {item.length > items.length && <li className="nbmodal-muted">… {item.length - items.length} more</li>}
    </ol>
  );
}

const CollectionRow = React.memo(function CollectionRow({
  kind,
  item
}: {
  kind: Kind;
  item: CollectionInfo;
}): JSX.Element {
  const [open, setOpen] = React.useState(false);
  const Caret = open ? caretDownIcon : caretRightIcon;
  // data-dict="name" / data-queue="name"
  const hook = { [kind === 'dicts' ? 'data-dict' : 'data-queue']: item.name };
  return (
    <div className="nbmodal-row nbmodal-collection" data-host={item.host} {...hook}>
      <div
        className="nbmodal-row-main nbmodal-clickable"
        role="button"
        tabIndex={0}
        aria-expanded={open}
        onClick={() => setOpen(!open)}
        onKeyDown={event => event.key === 'Enter' && setOpen(!open)}
      >
        <Caret.react tag="span" className="nbmodal-caret" />
        <span className="nbmodal-name nbmodal-ellipsis">{item.name}</span>
        <span className="nbmodal-muted" title={`home host: ${item.home}`}>{item.host}</span>
        <span className="nbmodal-muted nbmodal-right" title={kind === 'dicts' ? 'keys' : 'items'}>
          {item.length}
        </span>
      </div>
      {open && <Peek kind={kind} item={item} />}
    </div>
  );
});

export const CollectionsSection = React.memo(function CollectionsSection({
  kind,
  items
}: {
  kind: Kind;
  items: CollectionInfo[];
}): JSX.Element {
  const title = kind === 'dicts' ? 'Dicts' : 'Queues';
  return (
    <Section id={kind} title={title} count={items.length}>
      {items.length === 0 ? (
        <Empty>No {kind}.</Empty>
      ) : (
        items.map(item => <CollectionRow key={`${item.host}/${item.name}`} kind={kind} item={item} />)
      )}
    </Section>
  );
});
