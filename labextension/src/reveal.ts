// Links to runs from anywhere in the page, e.g. in a detached run's output widget:
//   <a data-nbmodal-run="RUN_ID" data-nbmodal-host="HOST">…</a>
// or, for HTML that JupyterLab sanitizes (untrusted output drops data-* attributes but keeps
// href):  <a href="#nbmodal-run:HOST:RUN_ID">…</a>  (each part URI-encoded).
import type { CommandRegistry } from '@lumino/commands';

export const REVEAL_RUN = 'nbmodal:reveal-run';

const HREF_PREFIX = '#nbmodal-run:';

export interface RunLink {
  host: string;
  run_id: string;
}

/** The run an href of the form `#nbmodal-run:HOST:RUN_ID` names, else null. */
export function parseRunHref(href: string | null | undefined): RunLink | null {
  if (!href || !href.startsWith(HREF_PREFIX)) {
    return null;
  }
  const [host, runId, ...rest] = href.slice(HREF_PREFIX.length).split(':');
  if (runId === undefined || rest.length > 0) {
    return null;
  }
  try {
    const link = { host: decodeURIComponent(host), run_id: decodeURIComponent(runId) };
    return link.run_id ? link : null;
  } catch {
    return null; // malformed %-escape
  }
}

/** The run a clicked element (or one of its ancestors) links to. */
export function runLinkOf(target: Element): RunLink | null {
  const tagged = target.closest<HTMLElement>('[data-nbmodal-run]');
  if (tagged?.dataset.nbmodalRun) {
    return { host: tagged.dataset.nbmodalHost ?? '', run_id: tagged.dataset.nbmodalRun };
  }
  const anchor = target.closest<HTMLAnchorElement>(`a[href^="${HREF_PREFIX}"]`);
  return parseRunHref(anchor?.getAttribute('href'));
}

export function installRunLinkHandler(commands: CommandRegistry): () => void {
  const onClick = (event: MouseEvent): void => {
    const link = event.target instanceof Element ? runLinkOf(event.target) : null;
    if (!link) {
      return;
    }
    // Capture phase + stopPropagation: an <a href> in rendered output must not also navigate or
    // be opened as a file by JupyterLab's own link handler.
    event.preventDefault();
    event.stopPropagation();
    void commands.execute(REVEAL_RUN, { ...link });
  };
  document.addEventListener('click', onClick, true);
  return () => document.removeEventListener('click', onClick, true);
}
