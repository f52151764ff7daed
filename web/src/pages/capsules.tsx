import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { api, unwrap, when } from '../api.ts';
import { Badge, Button, DataTable, Empty, ErrorNote, Page, Section, SelectField, TextField } from '../ui.tsx';

export function CapsulesPage() {
  const capsules = useQuery({
    queryKey: ['capsules'],
    queryFn: () => unwrap(api.GET('/v1/capsules', { params: { query: { limit: 100 } } })),
    // Capsules start, pause and stop on their own.
    refetchInterval: 5_000,
  });
  return (
    <Page title="Sandboxes">
      <CreateCapsule />
      <Section title="Capsules">
        <DataTable
          list={capsules}
          what="sandboxes"
          rowKey={(c) => c.id}
          empty={
            <Empty title="No sandboxes yet.">
              A capsule is an isolated Linux sandbox with a shell and files. Start one above, or let a task
              start one.
            </Empty>
          }
          columns={[
            { header: 'Capsule', cell: (c) => <Link to={`/capsules/${c.id}`}>{c.id}</Link> },
            { header: 'Template', cell: (c) => c.template },
            { header: 'Status', cell: (c) => <Badge status={c.status} /> },
            { header: 'Size', cell: (c) => `${c.vcpus} vCPU · ${c.memory_mb} MB` },
            { header: 'Created', cell: (c) => when(c.created_at) },
          ]}
        />
      </Section>
    </Page>
  );
}

function CreateCapsule() {
  const client = useQueryClient();
  const navigate = useNavigate();
  const templates = useQuery({
    queryKey: ['snapshots'],
    queryFn: () => unwrap(api.GET('/v1/snapshots')),
  });
  const [template, setTemplate] = useState('minimal');
  const [timeoutSec, setTimeoutSec] = useState('600');
  const create = useMutation({
    mutationFn: () =>
      unwrap(api.POST('/v1/capsules', { body: { template, timeout_sec: Number(timeoutSec) } })),
    onSuccess: (capsule) => {
      void client.invalidateQueries({ queryKey: ['capsules'] });
      void navigate(`/capsules/${capsule.id}`);
    },
  });
  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  const names = templates.data?.data.map((t) => t.name) ?? [];
  return (
    <Section title="Start a sandbox">
      <form onSubmit={onSubmit} className="grid-form">
        <SelectField
          label="Template"
          options={(names.includes('minimal') ? names : ['minimal', ...names]).map((n) => ({
            value: n,
            label: n,
          }))}
          value={template}
          onChange={(e) => setTemplate(e.target.value)}
        />
        <TextField
          label="Pause after idle (seconds)"
          type="number"
          min={0}
          hint="0 never pauses it; 1–59 counts as 60."
          value={timeoutSec}
          onChange={(e) => setTimeoutSec(e.target.value)}
        />
        <div className="form-end">
          <ErrorNote error={create.error ?? templates.error} />
          <Button type="submit" variant="primary" busy={create.isPending}>
            Start sandbox
          </Button>
        </div>
      </form>
    </Section>
  );
}
