import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useSearchParams } from 'react-router';
import { api, PaddockError, unwrap, usd, when } from '../api.ts';
import { Chart, periodLabel } from '../chart.tsx';
import {
  AmountField,
  Badge,
  Button,
  DataTable,
  Empty,
  ErrorNote,
  Loading,
  Page,
  Section,
  SelectField,
  Stat,
} from '../ui.tsx';
import { SpendChart, useRange } from './analytics.tsx';

export function useCredits() {
  return useQuery({ queryKey: ['credits'], queryFn: () => unwrap(api.GET('/v1/credits')) });
}

/** Credits as the API counts them (to the micro-credit): two places, more below one credit. */
export function credits(n: number): string {
  const small = n !== 0 && Math.abs(n) < 1;
  return n.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: small ? 6 : 2 });
}

/** The team's balance in a few figures (overview, billing). */
export function CreditFigures(props: { account: NonNullable<ReturnType<typeof useCredits>['data']> }) {
  const a = props.account;
  return (
    <div className="stats">
      <Stat label="Balance (credits)" value={credits(a.balance)} hint={<Badge status={a.state} />} />
      <Stat
        label="Available"
        value={credits(a.available)}
        hint={`${credits(a.held)} held for calls in flight`}
      />
      <Stat label="Low below" value={credits(a.low_threshold)} />
      <Stat
        label="Price"
        value={`${usd(a.price_per_credit_usd)} a credit`}
        hint={`mode ${a.mode}, markup ×${a.markup}`}
      />
    </div>
  );
}

const TYPES = ['purchase', 'grant', 'consume', 'refund', 'adjustment'] as const;
type TxType = (typeof TYPES)[number];

export function BillingPage() {
  const account = useCredits();
  const range = useRange('30d');
  return (
    <Page title="Credits and billing">
      <p className="muted lead">
        Credits are the team's usage in one currency: each model call and each minute of sandbox time consumes
        them at the server's price. Buy them with a plan or a credit pack when billing is on.
      </p>
      <Section title="Credits">
        {account.isPending ? <Loading what="the balance" /> : null}
        <ErrorNote error={account.error} />
        {account.data?.mode === 'off' ? (
          <Empty title="Credits are off on this server.">
            Nothing is counted or required: usage is still recorded as spend below. An operator turns credits
            on with PADDOCK_CREDITS=track or enforce.
          </Empty>
        ) : null}
        {account.data && account.data.mode !== 'off' ? (
          <>
            <CreditFigures account={account.data} />
            <LowThreshold current={account.data.low_threshold} />
          </>
        ) : null}
      </Section>
      <div className="charts">
        <Section title="Spend, last 30 days">
          <SpendChart range={range} title="Spend per day, last 30 days: model calls and sandboxes" />
        </Section>
        <Section title="Sandbox time, last 30 days">
          <SandboxUsage />
        </Section>
      </div>
      <Billing />
      <Ledger />
    </Page>
  );
}

function LowThreshold(props: { current: number }) {
  const client = useQueryClient();
  const [value, setValue] = useState(String(props.current));
  const save = useMutation({
    mutationFn: () =>
      unwrap(
        api.PATCH('/v1/credits', { body: { low_threshold: value.trim() === '' ? null : Number(value) } }),
      ),
    onSuccess: (account) => {
      setValue(String(account.low_threshold));
      return client.invalidateQueries({ queryKey: ['credits'] });
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    save.mutate();
  };
  return (
    <form onSubmit={submit} className="file-actions">
      <AmountField
        label="Low balance threshold (credits)"
        hint="Below it the team is low and a credits.low event fires. Empty: the server's default."
        value={value}
        onChange={setValue}
      />
      <Button type="submit" busy={save.isPending}>
        Save threshold
      </Button>
      <ErrorNote error={save.error} />
    </form>
  );
}

function SandboxUsage() {
  const usage = useQuery({
    queryKey: ['capsules', 'usage'],
    queryFn: () => unwrap(api.GET('/v1/capsules/usage')),
  });
  if (usage.isPending) return <Loading what="sandbox usage" />;
  if (usage.isError) return <ErrorNote error={usage.error} />;
  const points = usage.data.points;
  // The API's days are dates (YYYY-MM-DD, UTC); as midnight UTC they label like the spend chart's.
  const labels = points.map((p) => `${p.date}T00:00:00.000Z`);
  return (
    <Chart
      title="Reserved vCPU-minutes per day while sandboxes ran"
      kind="bar"
      labels={labels}
      series={[{ name: 'vCPU-minutes', values: points.map((p) => p.cpu_minutes) }]}
      yLabel="vCPU-minutes"
      xLabel="Day (UTC)"
      formatLabel={periodLabel('day')}
      empty={
        <Empty title="No sandbox time in the last 30 days.">
          Tasks run in sandboxes; you can also <Link to="/capsules">start one</Link>.
        </Empty>
      }
    />
  );
}

function Ledger() {
  const [type, setType] = useState<TxType | ''>('');
  // The pages seen so far, newest first: going back pops one.
  const [cursors, setCursors] = useState<string[]>([]);
  const cursor = cursors[cursors.length - 1];
  const list = useQuery({
    queryKey: ['credits', 'transactions', type, cursor],
    queryFn: () =>
      unwrap(
        api.GET('/v1/credits/transactions', {
          params: { query: { limit: 25, ...(type ? { type } : {}), ...(cursor ? { cursor } : {}) } },
        }),
      ),
  });
  const next = list.data?.next_cursor;
  return (
    <Section
      title="Ledger"
      actions={
        <SelectField
          label="Type"
          quietLabel
          value={type}
          onChange={(e) => {
            setType(e.target.value as TxType | '');
            setCursors([]);
          }}
          options={[{ value: '', label: 'Every type' }, ...TYPES.map((t) => ({ value: t, label: t }))]}
        />
      }
    >
      <DataTable
        list={list}
        what="the ledger"
        rowKey={(tx) => tx.id}
        empty={
          <Empty title={type ? `No ${type} entries.` : 'No credit movements yet.'}>
            Purchases, grants and what model calls and sandboxes consume appear here.
          </Empty>
        }
        columns={[
          { header: 'When', cell: (tx) => when(tx.created_at) },
          { header: 'Type', cell: (tx) => tx.type },
          {
            header: 'Credits',
            cell: (tx) => <span className={tx.amount < 0 ? 'bad' : 'ok'}>{signed(tx.amount)}</span>,
          },
          { header: 'Balance after', cell: (tx) => credits(tx.balance_after) },
          { header: 'Reason', cell: (tx) => tx.action ?? tx.reason, wrap: true },
          {
            header: 'Reference',
            cell: (tx) =>
              tx.reference_type === 'run' && tx.reference_id ? (
                <Link to={`/runs/${tx.reference_id}`}>{tx.reference_id}</Link>
              ) : (
                (tx.reference_id ?? '—')
              ),
          },
        ]}
      />
      <div className="actions">
        {cursors.length > 0 ? <Button onClick={() => setCursors(cursors.slice(0, -1))}>Newer</Button> : null}
        {next ? <Button onClick={() => setCursors([...cursors, next])}>Older</Button> : null}
      </div>
    </Section>
  );
}

function signed(n: number): string {
  return `${n > 0 ? '+' : n < 0 ? '−' : ''}${credits(Math.abs(n))}`;
}

const isBillingOff = (error: unknown) => error instanceof PaddockError && error.code === 'billing_disabled';

/** The Stripe part: plan and subscription, plans and packs to buy, the portal, auto top-up. */
function Billing() {
  const catalog = useQuery({
    queryKey: ['billing', 'plans'],
    queryFn: () => unwrap(api.GET('/v1/billing/plans')),
  });
  const billing = useQuery({
    queryKey: ['billing'],
    queryFn: () => unwrap(api.GET('/v1/billing')),
    enabled: catalog.isSuccess,
  });
  const [params] = useSearchParams();
  const returned = params.get('checkout');
  // Back from Stripe, the browser lands here: Stripe's own pages did the paying.
  const back = (result: string) => `${window.location.origin}/billing?checkout=${result}`;
  const checkout = useMutation({
    mutationFn: (what: { plan: string } | { pack: string }) =>
      'plan' in what
        ? unwrap(
            api.POST('/v1/billing/checkout', {
              body: { plan_id: what.plan, success_url: back('done'), cancel_url: back('cancelled') },
            }),
          )
        : unwrap(
            api.POST('/v1/billing/credit-packs/{id}/checkout', {
              params: { path: { id: what.pack } },
              body: { success_url: back('done'), cancel_url: back('cancelled') },
            }),
          ),
    onSuccess: (session) => window.location.assign(session.url),
  });
  const portal = useMutation({
    mutationFn: () =>
      unwrap(api.POST('/v1/billing/portal', { body: { return_url: `${window.location.origin}/billing` } })),
    onSuccess: (session) => window.location.assign(session.url),
  });
  if (catalog.isPending) return <Loading what="billing" />;
  if (isBillingOff(catalog.error))
    return (
      <Section title="Billing">
        <Empty title="Billing is not set up on this server.">
          Credits are granted by a platform admin. An operator turns on Stripe billing with
          PADDOCK_STRIPE_SECRET_KEY (see docs/billing.md).
        </Empty>
      </Section>
    );
  if (catalog.isError) return <ErrorNote error={catalog.error} />;
  const b = billing.data;

  return (
    <>
      <Section
        title="Plan"
        actions={
          b?.has_customer ? (
            <Button busy={portal.isPending} onClick={() => portal.mutate()}>
              Cards and invoices
            </Button>
          ) : null
        }
      >
        {returned === 'done' ? (
          <p className="note note-ok" role="status">
            Back from checkout: the credits arrive as soon as Stripe confirms the payment.
          </p>
        ) : null}
        <ErrorNote error={billing.error ?? checkout.error ?? portal.error} />
        {billing.isPending ? <Loading what="the plan" /> : null}
        {b ? (
          <dl className="facts">
            <dt>Plan</dt>
            <dd>{b.plan ? b.plan.name : 'none'}</dd>
            <dt>Subscription</dt>
            <dd>
              {b.subscription ? (
                <>
                  {b.subscription.status}
                  {b.subscription.current_period_end
                    ? `, renews ${when(b.subscription.current_period_end)}`
                    : ''}
                </>
              ) : (
                'none'
              )}
            </dd>
          </dl>
        ) : null}
        {catalog.data.plans.length === 0 ? (
          <p className="muted">This server sells no plans.</p>
        ) : (
          <ul className="plain">
            {catalog.data.plans.map((plan) => (
              <li key={plan.id}>
                <strong>{plan.name}</strong>: {credits(plan.included_credits)} credits each paid invoice
                {Object.keys(plan.limits).length > 0
                  ? ` (${Object.entries(plan.limits)
                      .map(([k, v]) => `${k.replace('_', ' ')} ${v}`)
                      .join(', ')})`
                  : ''}{' '}
                {b?.plan?.id === plan.id ? (
                  <Badge status="current" />
                ) : (
                  <Button
                    aria-label={`Subscribe to ${plan.name}`}
                    busy={checkout.isPending && 'plan' in (checkout.variables ?? {})}
                    onClick={() => checkout.mutate({ plan: plan.id })}
                  >
                    Subscribe
                  </Button>
                )}
              </li>
            ))}
          </ul>
        )}
      </Section>
      <Section title="Credit packs">
        {catalog.data.credit_packs.length === 0 ? (
          <p className="muted">This server sells no credit packs.</p>
        ) : (
          <ul className="plain">
            {catalog.data.credit_packs.map((pack) => (
              <li key={pack.id}>
                <strong>{pack.name}</strong>: {credits(pack.credits)} credits for {usd(pack.price_usd)}{' '}
                <Button
                  aria-label={`Buy ${pack.name}`}
                  busy={
                    checkout.isPending &&
                    (checkout.variables as { pack?: string } | undefined)?.pack === pack.id
                  }
                  onClick={() => checkout.mutate({ pack: pack.id })}
                >
                  Buy
                </Button>
              </li>
            ))}
          </ul>
        )}
      </Section>
      {b && catalog.data.credit_packs.length > 0 ? (
        <AutoTopUp billing={b} packs={catalog.data.credit_packs} />
      ) : null}
    </>
  );
}

type BillingView = Awaited<ReturnType<typeof getBilling>>;
function getBilling() {
  return unwrap(api.GET('/v1/billing'));
}

function AutoTopUp(props: { billing: BillingView; packs: Array<{ id: string; name: string }> }) {
  const client = useQueryClient();
  const t = props.billing.auto_top_up;
  const [enabled, setEnabled] = useState(t.enabled);
  const [threshold, setThreshold] = useState(t.threshold_credits === null ? '' : String(t.threshold_credits));
  const [pack, setPack] = useState(t.pack_id ?? props.packs[0]!.id);
  const [cap, setCap] = useState(t.monthly_cap_usd === null ? '' : String(t.monthly_cap_usd));
  const save = useMutation({
    mutationFn: () =>
      unwrap(
        api.PATCH('/v1/billing/auto-top-up', {
          body: {
            enabled,
            pack_id: pack,
            ...(threshold.trim() ? { threshold_credits: Number(threshold) } : {}),
            monthly_cap_usd: cap.trim() ? Number(cap) : null,
          },
        }),
      ),
    onSuccess: (view) => client.setQueryData(['billing'], view),
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    save.mutate();
  };
  return (
    <Section title="Auto top-up">
      <p className="muted">
        When the balance falls below the threshold, a pack is charged to the saved card, up to the monthly
        cap. Now {t.enabled ? <Badge status="active" /> : <Badge status="disabled" />} · {t.this_month.count}{' '}
        this month ({usd(t.this_month.usd)})
        {t.last ? ` · last ${t.last.status}${t.last.error ? `: ${t.last.error}` : ''}` : ''}
      </p>
      <form onSubmit={submit} className="grid-form">
        <div className="field">
          <label className="check">
            <input type="checkbox" checked={enabled} onChange={(e) => setEnabled(e.target.checked)} /> Top up
            automatically
          </label>
        </div>
        <AmountField label="Below (credits)" value={threshold} onChange={setThreshold} />
        <SelectField
          label="Pack"
          value={pack}
          onChange={(e) => setPack(e.target.value)}
          options={props.packs.map((p) => ({ value: p.id, label: p.name }))}
        />
        <AmountField label="Monthly cap (USD)" hint="Empty: no cap." value={cap} onChange={setCap} />
        <div className="form-end">
          <ErrorNote error={save.error} />
          <Button type="submit" variant="primary" busy={save.isPending}>
            Save auto top-up
          </Button>
        </div>
      </form>
    </Section>
  );
}
