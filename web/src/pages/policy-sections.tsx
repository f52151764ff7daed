import { useState } from 'react';
import { ENDED_REASONS, POLICY_DEFAULTS } from '../../../src/modules/policies/defaults.ts';
import { api, unwrap } from '../api.ts';
import { Button, CheckField, ListField, NumberField, Section, SelectField, TextField } from '../ui.tsx';

// The sections of the policy form: every field of the policy document
// (src/modules/policies/spec.ts), grouped as a reader looks for them.

export function getPolicy(id: string) {
  return unwrap(api.GET('/v1/policies/{id}', { params: { path: { id } } }));
}
export type PolicyOf = Awaited<ReturnType<typeof getPolicy>>;
/** The policy document: everything of a policy but its name and record-keeping. */
export type PolicyDoc = Omit<
  PolicyOf,
  'id' | 'team_id' | 'name' | 'version' | 'created_by' | 'updated_by' | 'created_at' | 'updated_at'
>;
type Routing = PolicyDoc['routing'];
type Provider = Routing['default_chain'][number];
type Outcome = NonNullable<PolicyDoc['outcome_defaults']>[(typeof ENDED_REASONS)[number]];

/** A new policy's document: the server's defaults. */
export function defaultDoc(): PolicyDoc {
  return structuredClone(POLICY_DEFAULTS) as PolicyDoc;
}

export interface SectionProps {
  doc: PolicyDoc;
  change: (patch: Partial<PolicyDoc>) => void;
}

const PROVIDERS_HINT = 'Providers in order, comma-separated: openai, anthropic, openai_compatible.';
const chain = (list: string[]) => list as Provider[];
const option = (value: string, label = value.replaceAll('_', ' ')) => ({ value, label });

export function BudgetSection({ doc, change }: SectionProps) {
  const b = doc.budget;
  const set = (patch: Partial<PolicyDoc['budget']>) => change({ budget: { ...b, ...patch } });
  const usd = { min: 0, step: 'any' } as const;
  return (
    <Section title="Budget">
      <div className="grid-form">
        <NumberField
          label="Limit per run (USD)"
          {...usd}
          hint="A run (a task) stops when it would spend more. Empty: no limit."
          value={b.hard_limit_usd}
          onValue={(v) => set({ hard_limit_usd: v })}
        />
        <NumberField
          label="Limit per run (tokens)"
          min={0}
          hint="Input and output tokens together. Empty: no limit."
          value={b.hard_limit_tokens}
          onValue={(v) => set({ hard_limit_tokens: v })}
        />
        <NumberField
          label="Alert at (USD per run)"
          {...usd}
          hint="Raises a budget alert when a run passes it. Empty: none."
          value={b.alert_threshold_usd}
          onValue={(v) => set({ alert_threshold_usd: v })}
        />
        <NumberField
          label="Alert at (tokens per run)"
          min={0}
          hint="Empty: none."
          value={b.alert_threshold_tokens}
          onValue={(v) => set({ alert_threshold_tokens: v })}
        />
        <SelectField
          label="When a run passes its alert"
          options={[
            option('continue_and_alert', 'alert, and carry on'),
            option('stop_and_alert', 'alert, and stop the run'),
            option('continue_and_block_new', 'alert, carry on, start no new run'),
          ]}
          value={b.on_alert_threshold}
          onChange={(e) => set({ on_alert_threshold: e.target.value as typeof b.on_alert_threshold })}
        />
        <NumberField
          label="Limit per hour (USD)"
          {...usd}
          hint="A rolling cap per agent under this policy. Empty: no limit."
          value={b.max_cost_per_hour_usd}
          onValue={(v) => set({ max_cost_per_hour_usd: v })}
        />
      </div>
    </Section>
  );
}

export function RateLimitsSection({ doc, change }: SectionProps) {
  const r = doc.rate_limits;
  const set = (patch: Partial<PolicyDoc['rate_limits']>) => change({ rate_limits: { ...r, ...patch } });
  return (
    <Section title="Rate limits">
      <p className="hint">Counted per agent under this policy; a call past a limit is refused with a 429.</p>
      <div className="grid-form">
        <NumberField
          label="Requests per minute"
          min={1}
          hint="Empty: no limit."
          value={r.max_requests_per_minute}
          onValue={(v) => set({ max_requests_per_minute: v })}
        />
        <NumberField
          label="Tokens per minute"
          min={1}
          hint="Empty: no limit."
          value={r.max_tokens_per_minute}
          onValue={(v) => set({ max_tokens_per_minute: v })}
        />
      </div>
    </Section>
  );
}

export function ModelsSection({ doc, change }: SectionProps) {
  return (
    <Section title="Models">
      <div className="grid-form">
        <ListField
          label="Allowed models"
          placeholder="gpt-4o*, claude-*"
          hint="Comma-separated globs. Empty: every model."
          value={doc.allowed_models}
          onValue={(v) => change({ allowed_models: v })}
        />
        <ListField
          label="Blocked models"
          hint="Comma-separated globs; they win over the allowed ones."
          value={doc.blocked_models}
          onValue={(v) => change({ blocked_models: v })}
        />
        <TextField
          label="Default model"
          hint="Used when a request names no model. Empty: none."
          value={doc.default_model ?? ''}
          onChange={(e) => change({ default_model: e.target.value.trim() || null })}
        />
        <TextField
          label="Model override"
          hint="Replaces every request's model and skips the model rules. Empty: off."
          value={doc.model_override ?? ''}
          onChange={(e) => change({ model_override: e.target.value.trim() || null })}
        />
      </div>
      <ModelMapping value={doc.model_mapping} onValue={(v) => change({ model_mapping: v })} />
    </Section>
  );
}

interface MappingRow {
  key: number;
  source: string;
  provider: string;
  target: string;
}

/** Rows keep a key of their own, so removing one does not hand its typed text to the next. */
function useRows<T extends { key: number }>(
  initial: () => Array<Omit<T, 'key'>>,
  onRows: (rows: T[]) => void,
) {
  const [rows, setRows] = useState<T[]>(() => initial().map((row, key) => ({ ...row, key }) as T));
  const [next, setNext] = useState(rows.length);
  const put = (list: T[]) => {
    setRows(list);
    onRows(list);
  };
  return {
    rows,
    update: (key: number, patch: Partial<T>) =>
      put(rows.map((r) => (r.key === key ? { ...r, ...patch } : r))),
    add: (row: Omit<T, 'key'>) => {
      put([...rows, { ...row, key: next } as T]);
      setNext(next + 1);
    },
    remove: (key: number) => put(rows.filter((r) => r.key !== key)),
  };
}

function ModelMapping(props: {
  value: PolicyDoc['model_mapping'];
  onValue: (v: PolicyDoc['model_mapping']) => void;
}) {
  const { rows, update, add, remove } = useRows<MappingRow>(
    () =>
      Object.entries(props.value).flatMap(([source, targets]) =>
        Object.entries(targets ?? {}).map(([provider, target]) => ({
          source,
          provider,
          target: target ?? '',
        })),
      ),
    (list) => {
      const mapping: PolicyDoc['model_mapping'] = {};
      for (const row of list) {
        if (row.source.trim() === '' || row.target.trim() === '') continue;
        mapping[row.source.trim()] = { ...mapping[row.source.trim()], [row.provider]: row.target.trim() };
      }
      props.onValue(mapping);
    },
  );
  return (
    <fieldset className="field">
      <legend>Model mapping</legend>
      <p className="hint">
        The model a request names, sent as another model on a given provider (when routing moves it there).
      </p>
      {rows.length === 0 ? <p className="muted">No mappings.</p> : null}
      {rows.map((row, i) => (
        <div className="row-form" key={row.key}>
          <TextField
            label={`Model asked for (mapping ${i + 1})`}
            quietLabel={i > 0}
            value={row.source}
            onChange={(e) => update(row.key, { source: e.target.value })}
          />
          <SelectField
            label={`Provider (mapping ${i + 1})`}
            quietLabel={i > 0}
            options={['openai', 'anthropic', 'openai_compatible'].map((p) => option(p, p))}
            value={row.provider}
            onChange={(e) => update(row.key, { provider: e.target.value })}
          />
          <TextField
            label={`Model sent (mapping ${i + 1})`}
            quietLabel={i > 0}
            value={row.target}
            onChange={(e) => update(row.key, { target: e.target.value })}
          />
          <Button aria-label={`Remove mapping ${i + 1}`} onClick={() => remove(row.key)}>
            Remove
          </Button>
        </div>
      ))}
      <Button onClick={() => add({ source: '', provider: 'openai', target: '' })}>Add a mapping</Button>
    </fieldset>
  );
}

export function ToolsSection({ doc, change }: SectionProps) {
  return (
    <Section title="Tools and approvals">
      <div className="grid-form">
        <ListField
          label="Allowed tools"
          placeholder="read_file, grep"
          hint="Comma-separated tool globs. Empty: every tool."
          value={doc.allowed_tools}
          onValue={(v) => change({ allowed_tools: v })}
        />
        <ListField
          label="Blocked tools"
          placeholder="bash"
          hint="Comma-separated tool globs an agent may not use; they win over the allowed ones."
          value={doc.blocked_tools}
          onValue={(v) => change({ blocked_tools: v })}
        />
        <ListField
          label="Tools that need approval"
          placeholder="bash, write_file"
          hint="Comma-separated tool globs. A call offering one waits in Approvals until a person decides."
          value={doc.require_approval}
          onValue={(v) => change({ require_approval: v })}
        />
        <NumberField
          label="Approval expires after (minutes)"
          min={1}
          max={10_080}
          placeholder={String(POLICY_DEFAULTS.approval_expiry_ms / 60_000)}
          hint="An undecided approval is refused after this. Empty: 480 (8 hours)."
          value={doc.approval_expiry_ms / 60_000}
          onValue={(v) =>
            change({
              approval_expiry_ms: v === null ? POLICY_DEFAULTS.approval_expiry_ms : Math.round(v * 60_000),
            })
          }
        />
      </div>
    </Section>
  );
}

/** A number field whose empty value is the document's default (shown as its placeholder). */
function DefaultedNumber(props: {
  label: string;
  hint: string;
  value: number;
  fallback: number;
  onValue: (v: number) => void;
  min?: number;
}) {
  return (
    <NumberField
      label={props.label}
      min={props.min}
      placeholder={String(props.fallback)}
      hint={`${props.hint} Empty: ${props.fallback}.`}
      value={props.value}
      onValue={(v) => props.onValue(v ?? props.fallback)}
    />
  );
}

export function RoutingSection({ doc, change }: SectionProps) {
  const r = doc.routing;
  const d = POLICY_DEFAULTS.routing;
  const set = (patch: Partial<Routing>) => change({ routing: { ...r, ...patch } });
  const cb = r.circuit_breaker;
  const setBreaker = (patch: Partial<Routing['circuit_breaker']>) =>
    set({ circuit_breaker: { ...cb, ...patch } });
  return (
    <Section title="Routing and failover">
      <div className="grid-form">
        <ListField
          label="Default provider chain"
          placeholder="openai, anthropic"
          hint={`${PROVIDERS_HINT} Empty: the agent's provider keys in their order.`}
          value={r.default_chain}
          onValue={(v) => set({ default_chain: chain(v) })}
        />
        <SelectField
          label="Load balancing"
          options={[option('failover'), option('round_robin'), option('weighted')]}
          value={r.load_balancing}
          onChange={(e) => set({ load_balancing: e.target.value as Routing['load_balancing'] })}
        />
        <SelectField
          label="Prefer"
          options={[
            option('default', 'the chain as written'),
            option('cost', 'the cheapest'),
            option('latency', 'the fastest'),
          ]}
          value={r.routing_preference}
          onChange={(e) => set({ routing_preference: e.target.value as Routing['routing_preference'] })}
        />
        <SelectField
          label="On a rate limit (429)"
          options={[option('failover_first', 'fail over first'), option('backoff_first', 'back off first')]}
          value={r.on_rate_limit}
          onChange={(e) => set({ on_rate_limit: e.target.value as Routing['on_rate_limit'] })}
        />
        <DefaultedNumber
          label="Attempts in all"
          min={1}
          hint="Total attempts, the first one included."
          value={r.max_retries}
          fallback={d.max_retries}
          onValue={(v) => set({ max_retries: v })}
        />
        <ListField
          label="Retry on statuses"
          hint={`Provider statuses that move on to the next attempt. Default: ${d.retry_on.join(', ')}.`}
          value={r.retry_on.map(String)}
          onValue={(v) => set({ retry_on: v.length === 0 ? [...d.retry_on] : v.map(Number) })}
        />
        <DefaultedNumber
          label="Timeout (ms)"
          min={1000}
          hint="First byte and body, after connecting."
          value={r.timeout_ms}
          fallback={d.timeout_ms}
          onValue={(v) => set({ timeout_ms: v })}
        />
        <DefaultedNumber
          label="Connect timeout (ms)"
          min={1000}
          hint="The TCP and TLS handshake; at most the timeout."
          value={r.connect_timeout_ms}
          fallback={d.connect_timeout_ms}
          onValue={(v) => set({ connect_timeout_ms: v })}
        />
        <DefaultedNumber
          label="Circuit opens after (failures)"
          min={0}
          hint="Failures in a row of one provider; 0 turns the breaker off."
          value={cb.failure_threshold}
          fallback={d.circuit_breaker.failure_threshold}
          onValue={(v) => setBreaker({ failure_threshold: v })}
        />
        <DefaultedNumber
          label="First cooldown (ms)"
          min={1000}
          hint="Before a probe; doubles after each failed one."
          value={cb.recovery_timeout_ms}
          fallback={d.circuit_breaker.recovery_timeout_ms}
          onValue={(v) => setBreaker({ recovery_timeout_ms: v })}
        />
        <DefaultedNumber
          label="Longest cooldown (ms)"
          min={1000}
          hint="Where the doubling stops."
          value={cb.max_recovery_timeout_ms}
          fallback={d.circuit_breaker.max_recovery_timeout_ms}
          onValue={(v) => setBreaker({ max_recovery_timeout_ms: v })}
        />
      </div>
      <ModelRoutes value={r.model_routes} onValue={(v) => set({ model_routes: v })} />
    </Section>
  );
}

interface RouteRow {
  key: number;
  pattern: string;
  chain: string[];
  timeout: number | null;
}

function ModelRoutes(props: {
  value: Routing['model_routes'];
  onValue: (v: Routing['model_routes']) => void;
}) {
  const { rows, update, add, remove } = useRows<RouteRow>(
    () => props.value.map((r) => ({ pattern: r.pattern, chain: r.chain, timeout: r.timeout_ms ?? null })),
    (list) =>
      props.onValue(
        list
          .filter((row) => row.pattern.trim() !== '')
          .map((row) => ({
            pattern: row.pattern.trim(),
            chain: chain(row.chain),
            ...(row.timeout === null ? {} : { timeout_ms: row.timeout }),
          })),
      ),
  );
  return (
    <fieldset className="field">
      <legend>Routes by model</legend>
      <p className="hint">
        The first pattern that matches a request's model picks its chain; others use the default chain.
      </p>
      {rows.length === 0 ? <p className="muted">No routes: every model uses the default chain.</p> : null}
      {rows.map((row, i) => (
        <div className="row-form" key={row.key}>
          <TextField
            label={`Model pattern (route ${i + 1})`}
            quietLabel={i > 0}
            placeholder="claude-*"
            value={row.pattern}
            onChange={(e) => update(row.key, { pattern: e.target.value })}
          />
          <ListField
            label={`Provider chain (route ${i + 1})`}
            quietLabel={i > 0}
            placeholder="anthropic, openai"
            value={row.chain}
            onValue={(v) => update(row.key, { chain: v })}
          />
          <NumberField
            label={`Timeout in ms (route ${i + 1})`}
            quietLabel={i > 0}
            min={1000}
            placeholder="the policy's"
            value={row.timeout}
            onValue={(v) => update(row.key, { timeout: v })}
          />
          <Button aria-label={`Remove route ${i + 1}`} onClick={() => remove(row.key)}>
            Remove
          </Button>
        </div>
      ))}
      <Button onClick={() => add({ pattern: '', chain: [], timeout: null })}>Add a route</Button>
    </fieldset>
  );
}

export function RunsSection({ doc, change }: SectionProps) {
  const rp = doc.runaway_prevention;
  const g = doc.implicit_run_grouping;
  const dg = POLICY_DEFAULTS.implicit_run_grouping;
  const setGrouping = (patch: Partial<typeof g>) => change({ implicit_run_grouping: { ...g, ...patch } });
  return (
    <Section title="Runs">
      <div className="grid-form">
        <CheckField
          label="Stop runaway runs"
          hint="A run that takes more steps than the limit is stopped."
          checked={rp.enabled}
          onChange={(on) => change({ runaway_prevention: { ...rp, enabled: on } })}
        />
        <NumberField
          label="Steps per run at most"
          min={1}
          hint="Needed when runaway runs are stopped."
          value={rp.max_steps_per_run}
          onValue={(v) => change({ runaway_prevention: { ...rp, max_steps_per_run: v } })}
        />
        <DefaultedNumber
          label="Group calls into a run within (s)"
          min={1}
          hint="Calls that name no run join the agent's last one within this window."
          value={g.time_window_seconds}
          fallback={dg.time_window_seconds}
          onValue={(v) => setGrouping({ time_window_seconds: v })}
        />
        <DefaultedNumber
          label="A run ends after idle (s)"
          min={1}
          hint="Seconds without a call."
          value={g.run_idle_timeout_seconds}
          fallback={dg.run_idle_timeout_seconds}
          onValue={(v) => setGrouping({ run_idle_timeout_seconds: v })}
        />
        <DefaultedNumber
          label="After a forced stop, wait (minutes)"
          min={0}
          hint="Before the agent may start a new run."
          value={g.force_stop_cooldown_minutes}
          fallback={dg.force_stop_cooldown_minutes}
          onValue={(v) => setGrouping({ force_stop_cooldown_minutes: v })}
        />
        <SelectField
          label="Content logging"
          options={[
            option('default', "the server's setting"),
            option('enabled', 'keep prompts and replies'),
            option('disabled', 'never keep them'),
          ]}
          value={doc.content_logging}
          onChange={(e) => change({ content_logging: e.target.value as PolicyDoc['content_logging'] })}
        />
        <CheckField
          label="Dry run"
          hint="Calls are governed and recorded but never sent to a provider."
          checked={doc.dry_run}
          onChange={(on) => change({ dry_run: on })}
        />
      </div>
      <OutcomeDefaults value={doc.outcome_defaults} onValue={(v) => change({ outcome_defaults: v })} />
    </Section>
  );
}

function OutcomeDefaults(props: {
  value: PolicyDoc['outcome_defaults'];
  onValue: (v: PolicyDoc['outcome_defaults']) => void;
}) {
  const set = (reason: (typeof ENDED_REASONS)[number], outcome: Outcome) => {
    const next = {
      ...Object.fromEntries(ENDED_REASONS.map((r) => [r, null])),
      ...props.value,
      [reason]: outcome,
    };
    // Every reason unset is the same as no defaults at all.
    props.onValue(Object.values(next).every((o) => o === null) ? null : next);
  };
  return (
    <fieldset className="field">
      <legend>Outcome when the agent set none</legend>
      <p className="hint">The outcome a run gets by the reason it ended.</p>
      <div className="grid-form">
        {ENDED_REASONS.map((reason) => (
          <SelectField
            key={reason}
            label={reason.replaceAll('_', ' ')}
            options={[option('', 'none'), option('success'), option('partial'), option('failed')]}
            value={props.value?.[reason] ?? ''}
            onChange={(e) => set(reason, (e.target.value || null) as Outcome)}
          />
        ))}
      </div>
    </fieldset>
  );
}
