import { CanvasAddon } from '@xterm/addon-canvas';
import { Terminal } from '@xterm/xterm';
import '@xterm/xterm/css/xterm.css';
import { useEffect, useRef, useState } from 'react';
import { openPty, type PtySession } from '../../../sdk/src/index.ts';
import { cookie, errorMessage } from '../api.ts';
import { Button } from '../ui.tsx';

type State = { kind: 'connecting' } | { kind: 'open' } | { kind: 'closed'; why: string };

/**
 * A capsule's shell in the page: xterm.js over the SDK's `openPty`, whose
 * browser WebSocket carries the session cookie and the CSRF token in the query.
 */
export function CapsuleTerminal(props: { capsuleId: string }) {
  // A reconnect is a new session: a new key mounts a fresh terminal and socket.
  const [attempt, setAttempt] = useState(0);
  return (
    <TerminalSession key={attempt} capsuleId={props.capsuleId} onReconnect={() => setAttempt((n) => n + 1)} />
  );
}

function TerminalSession(props: { capsuleId: string; onReconnect: () => void }) {
  const host = useRef<HTMLDivElement>(null);
  const [state, setState] = useState<State>({ kind: 'connecting' });
  useEffect(() => {
    const element = host.current;
    if (!element) return;
    const term = new Terminal({
      cols: 100,
      rows: 24,
      fontSize: 13,
      fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, monospace',
      theme: { background: '#111418', foreground: '#e6e9ed' },
      screenReaderMode: true,
    });
    // The canvas renderer, loaded before open, so xterm never makes its DOM
    // renderer's <style> elements: the dashboard's CSP allows no inline style.
    term.loadAddon(new CanvasAddon());
    term.open(element);
    term.textarea?.setAttribute('aria-label', 'Terminal input');
    let session: PtySession | undefined;
    let gone = false;
    openPty(
      {
        baseUrl: window.location.origin,
        csrf: () => cookie('paddock_csrf'),
        WebSocket: WebSocket as never,
        start: { cols: term.cols, rows: term.rows, cwd: '/home/user' },
      },
      props.capsuleId,
    ).then(
      (pty) => {
        if (gone) {
          pty.kill();
          return;
        }
        session = pty;
        setState({ kind: 'open' });
        pty.onOutput((bytes) => term.write(bytes));
        term.onData((data) => pty.write(data));
        term.onResize(({ cols, rows }) => pty.resize(cols, rows));
        term.focus();
        void pty.exited.then((code) => {
          if (!gone)
            setState({
              kind: 'closed',
              why: code === undefined ? 'The connection closed.' : `The shell exited (${code}).`,
            });
        });
      },
      (err: unknown) => {
        if (!gone) setState({ kind: 'closed', why: errorMessage(err) });
      },
    );
    return () => {
      gone = true;
      // Leaving the page ends the shell: a new visit starts a fresh one.
      session?.kill();
      session?.close();
      term.dispose();
    };
  }, [props.capsuleId]);
  return (
    <>
      <p className="muted" role="status">
        {state.kind === 'connecting' ? 'Connecting to the shell…' : null}
        {state.kind === 'open' ? 'Connected: type into the terminal below.' : null}
        {state.kind === 'closed' ? state.why : null}{' '}
        {state.kind === 'closed' ? <Button onClick={props.onReconnect}>Reconnect</Button> : null}
      </p>
      <div className="capsule-terminal" ref={host} />
    </>
  );
}
