import { CanvasAddon } from '@xterm/addon-canvas';
import { Terminal } from '@xterm/xterm';
import '@xterm/xterm/css/xterm.css';
import { useEffect, useRef, useState } from 'react';
import { openPty, type PtySession } from '../../../sdk/src/index.ts';
import { cookie, errorMessage } from '../api.ts';
import { Button } from '../ui.tsx';

type State = { kind: 'connecting' } | { kind: 'open' } | { kind: 'closed'; why: string };

/** The width xterm's viewport keeps for its scroll bar (as @xterm/addon-fit leaves it). */
const SCROLLBAR_PX = 14;

/**
 * The columns and rows that fill `box`: its inner size over one cell's, the
 * cell measured from xterm's screen as drawn (it is cols × rows cells).
 * Undefined until the screen has been drawn.
 */
function fittedSize(term: Terminal, box: HTMLElement): { cols: number; rows: number } | undefined {
  const screen = term.element?.querySelector<HTMLElement>('.xterm-screen');
  if (!screen || screen.offsetWidth === 0 || screen.offsetHeight === 0) return undefined;
  const cellWidth = screen.offsetWidth / term.cols;
  const cellHeight = screen.offsetHeight / term.rows;
  const style = getComputedStyle(box);
  const px = (value: string) => Number.parseFloat(value) || 0;
  const width = box.clientWidth - px(style.paddingLeft) - px(style.paddingRight) - SCROLLBAR_PX;
  const height = box.clientHeight - px(style.paddingTop) - px(style.paddingBottom);
  // The server takes 1–1000 of each; a terminal narrower than 20 columns is of no use.
  return {
    cols: Math.min(1000, Math.max(20, Math.floor(width / cellWidth))),
    rows: Math.min(1000, Math.max(5, Math.floor(height / cellHeight))),
  };
}

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
  const [size, setSize] = useState<{ cols: number; rows: number }>();
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
    // The terminal fills its box, and follows it when the window (or the box, dragged) changes size;
    // xterm's onResize then tells the shell (the PTY socket's resize message).
    const fit = () => {
      const fitted = fittedSize(term, element);
      if (fitted && (fitted.cols !== term.cols || fitted.rows !== term.rows))
        term.resize(fitted.cols, fitted.rows);
      setSize({ cols: term.cols, rows: term.rows });
    };
    let frame = 0;
    const observer = new ResizeObserver(() => {
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(fit);
    });
    observer.observe(element);
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
        // A fit made while the socket opened: the shell started at the size it was sent.
        pty.resize(term.cols, term.rows);
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
      observer.disconnect();
      cancelAnimationFrame(frame);
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
        {state.kind === 'open' && size ? (
          <span className="terminal-size">
            {' '}
            ({size.cols} columns × {size.rows} rows)
          </span>
        ) : null}
        {state.kind === 'closed' ? state.why : null}{' '}
        {state.kind === 'closed' ? <Button onClick={props.onReconnect}>Reconnect</Button> : null}
      </p>
      <div className="capsule-terminal" ref={host} />
    </>
  );
}
