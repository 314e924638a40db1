// A JupyterLab terminal joined to a container: the sidebar's "Open terminal" types the container's
// `nbmodal shell --host H ID` (the server says which) into a new terminal once it is connected.
import type { CommandRegistry } from '@lumino/commands';
import type { Terminal } from '@jupyterlab/services';

/** What `terminal:create-new` returns: a main-area widget around a terminal and its session. */
interface TerminalWidget {
  content?: { session?: Terminal.ITerminalConnection };
}

const CONNECT_TIMEOUT_MS = 30_000;

/** Resolves once the terminal's websocket is connected (typing before then would be lost). */
function connected(session: Terminal.ITerminalConnection): Promise<void> {
  if (session.connectionStatus === 'connected') {
    return Promise.resolve();
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      session.connectionStatusChanged.disconnect(onChange);
      reject(new Error('the terminal did not connect'));
    }, CONNECT_TIMEOUT_MS);
    const onChange = (_: unknown, status: Terminal.ConnectionStatus): void => {
      if (status === 'connected') {
        clearTimeout(timer);
        session.connectionStatusChanged.disconnect(onChange);
        resolve();
      }
    };
    session.connectionStatusChanged.connect(onChange);
  });
}

/** Opens a new terminal tab running `command` (a shell command line). */
export async function openTerminalWith(commands: CommandRegistry, command: string): Promise<void> {
  const widget = (await commands.execute('terminal:create-new')) as TerminalWidget | undefined;
  const session = widget?.content?.session;
  if (!session) {
    throw new Error('JupyterLab could not open a terminal (are terminals enabled on this server?)');
  }
  await connected(session);
  session.send({ type: 'stdin', content: [`${command}\r`] });
}
