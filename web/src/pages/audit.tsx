import { useState } from 'react';
import { useSearchParams } from 'react-router';
import { api, unwrap, when } from '../api.ts';
import { useActorName } from '../names.ts';
import { usePaged } from '../paged.ts';
import { DataTable, Empty, Page, Section, SelectField, TextField } from '../ui.tsx';
import './pages-extra.css';

const OUTCOMES = ['success', 'denied', 'failed', 'blocked'] as const;
type Outcome = (typeof OUTCOMES)[number];
/** Each outcome in a badge's tone (styles.css `.badge-*`). */
const OUTCOME_TONE: Record<string, string> = { success: 'ok', denied: 'bad', failed: 'bad', blocked: 'warn' };

export function AuditPage() {
  const actorName = useActorName();
  const [params, setParams] = useSearchParams();
  const outcome = (OUTCOMES as readonly string[]).includes(params.get('outcome') ?? '')
    ? (params.get('outcome') as Outcome)
    : undefined;
  const action = params.get('action') ?? '';
  const [actionText, setActionText] = useState(action);
  const entries = usePaged({
    queryKey: ['audit-logs', outcome ?? 'any', action],
    page: (cursor) =>
      unwrap(
        api.GET('/v1/audit-logs', {
          params: {
            query: {
              limit: 200,
              ...(cursor ? { cursor } : {}),
              ...(outcome ? { outcome } : {}),
              ...(action ? { action } : {}),
            },
          },
        }),
      ),
  });
  const filter = (next: { outcome?: string; action?: string }) => {
    const merged = { outcome: outcome ?? '', action, ...next };
    setParams(Object.fromEntries(Object.entries(merged).filter(([, v]) => v !== '')));
  };
  return (
    <Page title="Audit log">
      <p className="muted">
        Who did what to which resource, from where, with what outcome. Team owners and admins can read it.
      </p>
      <Section
        title="Entries"
        actions={
          <form
            className="file-actions"
            onSubmit={(e) => {
              e.preventDefault();
              filter({ action: actionText.trim() });
            }}
          >
            <TextField
              label="Action"
              placeholder="agent.* or task.cancelled"
              value={actionText}
              onChange={(e) => setActionText(e.target.value)}
            />
            <SelectField
              label="Outcome"
              options={[{ value: '', label: 'Any' }, ...OUTCOMES.map((o) => ({ value: o, label: o }))]}
              value={outcome ?? ''}
              onChange={(e) => filter({ outcome: e.target.value })}
            />
          </form>
        }
      >
        <DataTable
          list={entries}
          what="the audit log"
          rowKey={(e) => e.id}
          empty={
            <Empty title={outcome || action ? 'No entry matches.' : 'The audit log is empty.'}>
              {outcome || action
                ? 'Change the filters above (an action prefix ends in *).'
                : 'Every change made through the API is written here.'}
            </Empty>
          }
          columns={[
            { header: 'When', cell: (e) => when(e.created_at) },
            { header: 'Action', cell: (e) => <code>{e.action}</code> },
            {
              header: 'Outcome',
              cell: (e) => (
                <span className={`badge badge-${OUTCOME_TONE[e.outcome] ?? 'muted'}`}>{e.outcome}</span>
              ),
            },
            {
              header: 'Who',
              cell: (e) => actorName(e.actor_kind, e.actor_id),
              wrap: true,
            },
            { header: 'Resource', cell: (e) => e.resource_id ?? '—', wrap: true },
            { header: 'From', cell: (e) => e.ip_address ?? '—' },
          ]}
        />
      </Section>
    </Page>
  );
}
