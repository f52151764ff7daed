// The dashboard's one component set: every page is built from these, so
// spacing, colours, focus rings and states look and behave the same everywhere.
import {
  type ButtonHTMLAttributes,
  type InputHTMLAttributes,
  type ReactNode,
  type SelectHTMLAttributes,
  type TextareaHTMLAttributes,
  useId,
  useState,
} from 'react';
import { Link } from 'react-router';
import { errorMessage, splitList } from './api.ts';
import type { Pager } from './paged.ts';

export function Page(props: { title: string; actions?: ReactNode; children: ReactNode }) {
  return (
    <>
      <div className="page-head">
        <h1>{props.title}</h1>
        {props.actions ? <div className="actions">{props.actions}</div> : null}
      </div>
      {props.children}
    </>
  );
}

export function Section(props: { title: string; children: ReactNode; actions?: ReactNode }) {
  const id = useId();
  return (
    <section className="card" aria-labelledby={id}>
      <div className="card-head">
        <h2 id={id}>{props.title}</h2>
        {props.actions}
      </div>
      {props.children}
    </section>
  );
}

type Variant = 'primary' | 'default' | 'danger';

export function Button({
  variant = 'default',
  busy,
  children,
  ...rest
}: ButtonHTMLAttributes<HTMLButtonElement> & { variant?: Variant; busy?: boolean }) {
  return (
    <button
      type="button"
      {...rest}
      className={`btn btn-${variant}`}
      disabled={rest.disabled || busy}
      aria-busy={busy || undefined}
    >
      {busy ? <span className="spinner" aria-hidden="true" /> : null}
      {children}
    </button>
  );
}

export function ButtonLink(props: { to: string; children: ReactNode; variant?: Variant }) {
  return (
    <Link to={props.to} className={`btn btn-${props.variant ?? 'default'}`}>
      {props.children}
    </Link>
  );
}

interface FieldProps {
  label: string;
  hint?: ReactNode;
  /** The label is read by screen readers only (a field inside a table row, named by its row). */
  quietLabel?: boolean;
}

function Field(props: FieldProps & { id: string; children: ReactNode }) {
  return (
    <div className="field">
      <label htmlFor={props.id} className={props.quietLabel ? 'visually-hidden' : undefined}>
        {props.label}
      </label>
      {props.children}
      {props.hint ? (
        <p className="hint" id={`${props.id}-hint`}>
          {props.hint}
        </p>
      ) : null}
    </div>
  );
}

export function TextField({
  label,
  hint,
  quietLabel,
  ...input
}: FieldProps & InputHTMLAttributes<HTMLInputElement>) {
  const id = useId();
  return (
    <Field id={id} label={label} hint={hint} quietLabel={quietLabel}>
      <input id={id} aria-describedby={hint ? `${id}-hint` : undefined} {...input} />
    </Field>
  );
}

/** An e-mail address, as sign-in, sign-up and invitations ask for it. */
export function EmailField(props: {
  value: string;
  onChange: (value: string) => void;
  autoComplete?: string;
}) {
  return (
    <TextField
      label="Email"
      type="email"
      autoComplete={props.autoComplete ?? 'email'}
      required
      value={props.value}
      onChange={(e) => props.onChange(e.target.value)}
    />
  );
}

/** A non-negative amount (USD, credits) that takes decimals; empty is the caller's "none". */
export function AmountField(props: FieldProps & { value: string; onChange: (value: string) => void }) {
  const { value, onChange, ...field } = props;
  return (
    <TextField
      {...field}
      type="number"
      min={0}
      step="any"
      value={value}
      onChange={(e) => onChange(e.target.value)}
    />
  );
}

export function TextArea({
  label,
  hint,
  quietLabel,
  ...input
}: FieldProps & TextareaHTMLAttributes<HTMLTextAreaElement>) {
  const id = useId();
  return (
    <Field id={id} label={label} hint={hint} quietLabel={quietLabel}>
      <textarea id={id} aria-describedby={hint ? `${id}-hint` : undefined} rows={4} {...input} />
    </Field>
  );
}

export function SelectField({
  label,
  hint,
  quietLabel,
  options,
  ...select
}: FieldProps &
  SelectHTMLAttributes<HTMLSelectElement> & { options: Array<{ value: string; label: string }> }) {
  const id = useId();
  return (
    <Field id={id} label={label} hint={hint} quietLabel={quietLabel}>
      <select id={id} aria-describedby={hint ? `${id}-hint` : undefined} {...select}>
        {options.map((o) => (
          <option key={o.value} value={o.value}>
            {o.label}
          </option>
        ))}
      </select>
    </Field>
  );
}

/** A set of checkboxes, one per choice, under one legend. */
export function Checkboxes(props: {
  legend: string;
  hint?: string;
  choices: readonly string[];
  value: string[];
  onChange: (value: string[]) => void;
}) {
  return (
    <fieldset className="field">
      <legend>{props.legend}</legend>
      <div className="checks">
        {props.choices.map((choice) => (
          <label key={choice} className="check">
            <input
              type="checkbox"
              checked={props.value.includes(choice)}
              onChange={(e) =>
                props.onChange(
                  e.target.checked ? [...props.value, choice] : props.value.filter((v) => v !== choice),
                )
              }
            />
            {choice}
          </label>
        ))}
      </div>
      {props.hint ? <p className="hint">{props.hint}</p> : null}
    </fieldset>
  );
}

/** A failed call, in the API's words. */
export function ErrorNote(props: { error: unknown }) {
  if (!props.error) return null;
  return (
    <div className="note note-error" role="alert">
      {errorMessage(props.error)}
    </div>
  );
}

export function Loading(props: { what?: string }) {
  return (
    <p className="muted" role="status">
      <span className="spinner" aria-hidden="true" /> Loading{props.what ? ` ${props.what}` : ''}…
    </p>
  );
}

/**
 * One thing's page before it has the thing: the wait, or the API's error with
 * a way back to the list. Answers null once the query has its data.
 */
export function NotLoaded(props: {
  query: { isPending: boolean; isError: boolean; error: unknown };
  what: string;
  title: string;
  back: { to: string; label: string };
}) {
  if (props.query.isPending) return <Loading what={props.what} />;
  if (!props.query.isError) return null;
  return (
    <Page title={props.title}>
      <ErrorNote error={props.query.error} />
      <Link to={props.back.to}>{props.back.label}</Link>
    </Page>
  );
}

/** What an empty list means, and the next step. */
export function Empty(props: { title: string; children: ReactNode; action?: ReactNode }) {
  return (
    <div className="empty">
      <p className="empty-title">{props.title}</p>
      <p className="muted">{props.children}</p>
      {props.action}
    </div>
  );
}

const TONES: Record<string, string> = {
  completed: 'ok',
  ready: 'ok',
  current: 'info',
  building: 'info',
  active: 'ok',
  approved: 'ok',
  consumed: 'ok',
  running: 'info',
  queued: 'info',
  awaiting_approval: 'warn',
  pending: 'warn',
  disabled: 'muted',
  cancelled: 'muted',
  expired: 'muted',
  revoked: 'muted',
  accepted: 'ok',
  deactivated: 'bad',
  deleted: 'muted',
  failed: 'bad',
  rejected: 'bad',
  succeeded: 'ok',
  online: 'ok',
  done: 'ok',
  in_progress: 'info',
  todo: 'info',
  review: 'warn',
  draining: 'warn',
  failing: 'bad',
  blocked: 'bad',
  unreachable: 'bad',
  offline: 'muted',
  paused: 'muted',
  unread: 'info',
  read: 'muted',
  // credit balances and provider circuits (chart pages)
  ok: 'ok',
  low: 'warn',
  exhausted: 'bad',
  closed: 'ok',
  half_open: 'warn',
  open: 'bad',
};

export function Badge(props: { status: string }) {
  return (
    <span className={`badge badge-${TONES[props.status] ?? 'muted'}`}>{props.status.replace('_', ' ')}</span>
  );
}

export function Stat(props: { label: string; value: ReactNode; hint?: ReactNode }) {
  return (
    <div className="stat">
      <p className="stat-label">{props.label}</p>
      <p className="stat-value">{props.value}</p>
      {props.hint ? <p className="hint">{props.hint}</p> : null}
    </div>
  );
}

/** A secret the API shows once: its value, a copy button and the warning. */
export function ShownOnce(props: { label: string; value: string; onDone: () => void }) {
  const [copied, setCopied] = useState(false);
  return (
    <div className="note note-ok" role="status">
      <p>
        <strong>{props.label}</strong> — copy it now: it is not shown again.
      </p>
      <code className="secret">{props.value}</code>
      <div className="actions">
        <Button
          onClick={() => {
            void navigator.clipboard?.writeText(props.value).then(() => setCopied(true));
          }}
        >
          {copied ? 'Copied' : 'Copy'}
        </Button>
        <Button onClick={props.onDone}>Done</Button>
      </div>
    </div>
  );
}

export interface Column<T> {
  header: string;
  cell: (row: T) => ReactNode;
  /** The header is read by screen readers only (an actions column). */
  quietHeader?: boolean;
  wrap?: boolean;
}

/**
 * A list from the API as every page shows one: loading, the API's error, the
 * empty state (what to do next), or the table.
 */
export function DataTable<T>(props: {
  /** With a `pager` (usePaged), the table ends with "Load more" while the API has more. */
  list: { isPending: boolean; error: unknown; data?: { data: T[] } | undefined; pager?: Pager };
  what: string;
  empty: ReactNode;
  columns: Array<Column<T>>;
  rowKey: (row: T) => string;
}) {
  const rows = props.list.data?.data;
  return (
    <>
      {props.list.isPending ? <Loading what={props.what} /> : null}
      <ErrorNote error={props.list.error} />
      {rows?.length === 0 ? props.empty : null}
      {rows && rows.length > 0 ? (
        <table className="table">
          <thead>
            <tr>
              {props.columns.map((c) => (
                <th scope="col" key={c.header}>
                  {c.quietHeader ? <span className="visually-hidden">{c.header}</span> : c.header}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => (
              <tr key={props.rowKey(row)}>
                {props.columns.map((c) => (
                  <td key={c.header} className={c.wrap ? 'wrap' : undefined}>
                    {c.cell(row)}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {props.list.pager && rows && rows.length > 0 ? (
        <LoadMore pager={props.list.pager} shown={rows.length} />
      ) : null}
    </>
  );
}

/** The end of a paged list: how many rows are shown, and the next page while there is one. */
function LoadMore(props: { pager: Pager; shown: number }) {
  const { pager, shown } = props;
  if (!pager.hasMore && pager.pages < 2) return null;
  return (
    <div className="load-more">
      <p className="muted" aria-live="polite">
        {pager.hasMore ? `Showing the first ${shown}.` : `All ${shown} shown.`}
      </p>
      {pager.hasMore ? (
        // Not disabled while it loads: the button keeps the keyboard's focus for the next page.
        <Button onClick={pager.loadMore}>{pager.loading ? 'Loading…' : 'Load more'}</Button>
      ) : null}
    </div>
  );
}

/**
 * Items in columns by status (a queue's jobs, the work board), each column
 * headed by its name and count; a card is whatever `card` draws.
 */
export function Board<T>(props: {
  columns: Array<{ key: string; title: string; items: T[] }>;
  card: (item: T) => ReactNode;
  itemKey: (item: T) => string;
}) {
  const id = useId();
  return (
    <div className="board">
      {props.columns.map((column) => (
        <section key={column.key} className="board-column" aria-labelledby={`${id}-${column.key}`}>
          <h2 id={`${id}-${column.key}`} className="board-title">
            {column.title} <span className="muted">{column.items.length}</span>
          </h2>
          {column.items.length === 0 ? (
            <p className="hint">None.</p>
          ) : (
            <ul className="board-cards">
              {column.items.map((item) => (
                <li key={props.itemKey(item)} className="board-card">
                  {props.card(item)}
                </li>
              ))}
            </ul>
          )}
        </section>
      ))}
    </div>
  );
}

/** A destructive action, asked once more before it runs. */
export function ConfirmButton(props: {
  label: string;
  name: string;
  question: string;
  busy: boolean;
  onConfirm: () => void;
}) {
  return (
    <Button
      variant="danger"
      aria-label={`${props.label} ${props.name}`}
      busy={props.busy}
      onClick={() => {
        if (window.confirm(props.question)) props.onConfirm();
      }}
    >
      {props.label}
    </Button>
  );
}

export function Json(props: { value: unknown }) {
  return <pre className="json">{JSON.stringify(props.value, null, 2)}</pre>;
}

/**
 * A number or nothing: an empty field hands on null (the API's "no limit", or
 * the default its owner puts in its place). The text is kept as typed.
 */
export function NumberField({
  value,
  onValue,
  ...props
}: FieldProps &
  Omit<InputHTMLAttributes<HTMLInputElement>, 'value' | 'onChange' | 'type'> & {
    value: number | null;
    onValue: (value: number | null) => void;
  }) {
  const [text, setText] = useState(value === null ? '' : String(value));
  return (
    <TextField
      {...props}
      type="number"
      value={text}
      onChange={(e) => {
        setText(e.target.value);
        onValue(e.target.value.trim() === '' ? null : Number(e.target.value));
      }}
    />
  );
}

/**
 * A list typed as comma-separated text: the text is kept as typed (a trailing
 * ", " included) and the list handed on is its trimmed, non-empty parts.
 */
export function ListField({
  value,
  onValue,
  ...props
}: FieldProps &
  Omit<InputHTMLAttributes<HTMLInputElement>, 'value' | 'onChange'> & {
    value: readonly string[];
    onValue: (value: string[]) => void;
  }) {
  const [text, setText] = useState(value.join(', '));
  return (
    <TextField
      {...props}
      value={text}
      onChange={(e) => {
        setText(e.target.value);
        onValue(splitList(e.target.value));
      }}
    />
  );
}

/** One on/off choice. */
export function CheckField(props: {
  label: string;
  hint?: ReactNode;
  checked: boolean;
  onChange: (checked: boolean) => void;
}) {
  const id = useId();
  return (
    <div className="field">
      <label className="check" htmlFor={id}>
        <input
          id={id}
          type="checkbox"
          checked={props.checked}
          aria-describedby={props.hint ? `${id}-hint` : undefined}
          onChange={(e) => props.onChange(e.target.checked)}
        />
        {props.label}
      </label>
      {props.hint ? (
        <p className="hint" id={`${id}-hint`}>
          {props.hint}
        </p>
      ) : null}
    </div>
  );
}

/** A file the API answers on a GET, saved by the browser (the session cookie goes with it). */
export function DownloadLink(props: { href: string; name: string }) {
  return (
    <a
      className="btn btn-default"
      href={props.href}
      download={props.name}
      aria-label={`Download ${props.name}`}
    >
      Download
    </a>
  );
}

/** A value as a change shows it: text as it is, anything else as JSON, nothing as "none". */
export function ShownValue(props: { value: unknown }) {
  if (props.value === null || props.value === undefined) return <span className="muted">none</span>;
  const text = typeof props.value === 'string' ? props.value : JSON.stringify(props.value, null, 2);
  return <pre className="output">{text}</pre>;
}
