// A container row's "Open terminal": a JupyterLab terminal with a shell inside the container.
import * as React from 'react';

import { useActions } from '../actions';
import type { ContainerInfo } from '../types';

export function TerminalButton({ container }: { container: ContainerInfo }): JSX.Element | null {
  const actions = useActions();
  const open = actions.openTerminal;
  const usable = container.state === 'busy' || container.state === 'idle';
  if (!open || !container.shell_command) {
    return null;
  }
  return (
    <button
      className="nbmodal-open-terminal jp-mod-styled"
      title={`Open a terminal with a shell in this container: ${container.shell_command}`}
      disabled={!usable}
      onClick={() => open(container)}
    >
      Open terminal
    </button>
  );
}
