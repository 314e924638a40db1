// A collapsible sidebar section with a count; the browser test finds it by data-section.
import * as React from 'react';
import { caretDownIcon, caretRightIcon } from '@jupyterlab/ui-components';

export interface SectionProps {
  id: string;
  title: string;
  count: number;
  /** Changing this opens the section (a reveal must not land in a collapsed one). */
  openSignal?: number;
  children: React.ReactNode;
}

export function Section({ id, title, count, openSignal, children }: SectionProps): JSX.Element {
  const [open, setOpen] = React.useState(true);
  React.useEffect(() => {
    if (openSignal) {
      setOpen(true);
    }
  }, [openSignal]);
  const Caret = open ? caretDownIcon : caretRightIcon;
  return (
    <section className="nbmodal-section" data-section={id} data-open={open}>
      <button
        className="nbmodal-section-header"
        aria-expanded={open}
        onClick={() => setOpen(!open)}
      >
        <Caret.react tag="span" className="nbmodal-caret" />
        <span className="nbmodal-section-title">{title}</span>
        <span className="nbmodal-count">{count}</span>
      </button>
      {open && <div className="nbmodal-section-body">{children}</div>}
    </section>
  );
}

/** The line a section shows when it has no rows. */
export function Empty({ children }: { children: React.ReactNode }): JSX.Element {
  return <div className="nbmodal-empty">{children}</div>;
}
