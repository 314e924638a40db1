import { describe, expect, it } from 'vitest';

import { openTerminalWith } from '../terminal';

type Listener = (sender: unknown, status: string) => void;

/** A terminal session as `terminal:create-new` gives one: a status, its change signal, `send`. */
function fakeSession(status: string) {
  const listeners: Listener[] = [];
  const sent: unknown[] = [];
  return {
    sent,
    listeners,
    session: {
      connectionStatus: status,
      connectionStatusChanged: {
        connect: (listener: Listener) => listeners.push(listener),
        disconnect: (listener: Listener) => listeners.splice(listeners.indexOf(listener), 1)
      },
      send: (message: unknown) => sent.push(message)
    }
  };
}

function commandsReturning(widget: unknown) {
  return { execute: async (id: string) => (id === 'terminal:create-new' ? widget : undefined) } as never;
}

describe('openTerminalWith', () => {
  it('types the command once the terminal is connected, not before', async () => {
    const fake = fakeSession('connecting');
    const opening = openTerminalWith(commandsReturning({ content: { session: fake.session } }), 'nbmodal shell c-1');
    await Promise.resolve();
    await Promise.resolve();
    expect(fake.sent).toEqual([]);
    fake.session.connectionStatus = 'connected';
    [...fake.listeners].forEach(listener => listener(fake.session, 'connected'));
    await opening;
    expect(fake.sent).toEqual([{ type: 'stdin', content: ['nbmodal shell c-1\r'] }]);
    expect(fake.listeners).toEqual([]);
  });

  it('types at once into a connected terminal', async () => {
    const fake = fakeSession('connected');
    await openTerminalWith(commandsReturning({ content: { session: fake.session } }), 'ls');
    expect(fake.sent).toEqual([{ type: 'stdin', content: ['ls\r'] }]);
  });

  it('says so when no terminal can be opened', async () => {
    await expect(openTerminalWith(commandsReturning(undefined), 'ls')).rejects.toThrow(/could not open a terminal/);
  });
});
