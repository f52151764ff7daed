import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { api, unwrap, when } from '../api.ts';
import {
  Button,
  Checkboxes,
  ConfirmButton,
  DataTable,
  Empty,
  ErrorNote,
  Page,
  Section,
  SelectField,
  TextField,
} from '../ui.tsx';
import './agents-extra.css';
import { useAgents } from './agents.tsx';

type Secret = Awaited<ReturnType<typeof listSecrets>>['data'][number];
type Scope = 'all' | 'agents';

function listSecrets() {
  return unwrap(api.GET('/v1/secrets', { params: { query: { limit: 200 } } }));
}

export function SecretsPage() {
  const client = useQueryClient();
  const secrets = useQuery({ queryKey: ['secrets'], queryFn: listSecrets });
  const agents = useAgents();
  const [changing, setChanging] = useState<string>();
  const agentName = (id: string) => agents.data?.data.find((a) => a.id === id)?.name ?? id;
  const remove = useMutation({
    mutationFn: (id: string) => unwrap(api.DELETE('/v1/secrets/{id}', { params: { path: { id } } })),
    onSuccess: () => client.invalidateQueries({ queryKey: ['secrets'] }),
  });
  return (
    <Page title="Secrets">
      <p className="muted lead">
        A secret is an environment variable of your agents' sandboxes, e.g. a database password. Values are
        sealed on the server, never shown again, and replaced by [secret:NAME] wherever they appear in a
        tool's output.
      </p>
      <NewSecret />
      <Section title="Secrets">
        <ErrorNote error={remove.error} />
        <DataTable
          list={secrets}
          what="secrets"
          rowKey={(s) => s.id}
          empty={
            <Empty title="No secrets yet.">
              Add one above: its name is the variable the agents' commands read, e.g. GITHUB_TOKEN.
            </Empty>
          }
          columns={[
            { header: 'Name', cell: (s) => <code>{s.name}</code> },
            {
              header: 'Agents',
              cell: (s) => (s.scope === 'all' ? 'every agent' : s.agent_ids.map(agentName).join(', ')),
              wrap: true,
            },
            { header: 'Value', cell: (s) => `version ${s.value_version}` },
            { header: 'Updated', cell: (s) => when(s.updated_at) },
            {
              header: 'Actions',
              quietHeader: true,
              cell: (s) =>
                changing === s.id ? (
                  <NewValue secret={s} onDone={() => setChanging(undefined)} />
                ) : (
                  <div className="actions">
                    <Button aria-label={`New value for ${s.name}`} onClick={() => setChanging(s.id)}>
                      New value
                    </Button>
                    <ConfirmButton
                      label="Delete"
                      name={s.name}
                      question={`Delete the secret ${s.name}? Tasks started from now on go without it.`}
                      busy={remove.isPending && remove.variables === s.id}
                      onConfirm={() => remove.mutate(s.id)}
                    />
                  </div>
                ),
            },
          ]}
        />
      </Section>
    </Page>
  );
}

function NewValue(props: { secret: Secret; onDone: () => void }) {
  const client = useQueryClient();
  const [value, setValue] = useState('');
  const save = useMutation({
    mutationFn: () =>
      unwrap(api.PATCH('/v1/secrets/{id}', { params: { path: { id: props.secret.id } }, body: { value } })),
    onSuccess: async () => {
      await client.invalidateQueries({ queryKey: ['secrets'] });
      props.onDone();
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    save.mutate();
  };
  return (
    <form onSubmit={submit} className="inline-form">
      <TextField
        label={`New value of ${props.secret.name}`}
        type="password"
        autoComplete="off"
        required
        minLength={4}
        value={value}
        onChange={(e) => setValue(e.target.value)}
      />
      <ErrorNote error={save.error} />
      <div className="actions">
        <Button type="submit" variant="primary" busy={save.isPending}>
          Save value
        </Button>
        <Button onClick={props.onDone}>Cancel</Button>
      </div>
    </form>
  );
}

function NewSecret() {
  const client = useQueryClient();
  const agents = useAgents();
  const [name, setName] = useState('');
  const [value, setValue] = useState('');
  const [scope, setScope] = useState<Scope>('all');
  const [chosen, setChosen] = useState<string[]>([]);
  const list = agents.data?.data ?? [];
  const create = useMutation({
    mutationFn: () =>
      unwrap(
        api.POST('/v1/secrets', {
          body: {
            name,
            value,
            scope,
            ...(scope === 'agents'
              ? { agent_ids: list.filter((a) => chosen.includes(a.name)).map((a) => a.id) }
              : {}),
          },
        }),
      ),
    onSuccess: () => {
      setName('');
      setValue('');
      setChosen([]);
      return client.invalidateQueries({ queryKey: ['secrets'] });
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  return (
    <Section title="Add a secret">
      <form onSubmit={submit}>
        <div className="grid-form">
          <TextField
            label="Name"
            required
            placeholder="DATABASE_URL"
            hint="The environment variable: capital letters, digits and _."
            value={name}
            onChange={(e) => setName(e.target.value)}
          />
          <TextField
            label="Value"
            type="password"
            autoComplete="off"
            required
            minLength={4}
            hint="At least 4 characters. It is not shown again."
            value={value}
            onChange={(e) => setValue(e.target.value)}
          />
          <SelectField
            label="Given to"
            options={[
              { value: 'all', label: 'Every agent of the team' },
              { value: 'agents', label: 'The agents chosen below' },
            ]}
            value={scope}
            onChange={(e) => setScope(e.target.value as Scope)}
          />
        </div>
        {scope === 'agents' ? (
          <Checkboxes
            legend="Agents"
            hint={list.length === 0 ? 'No agents yet: create one first.' : undefined}
            choices={list.map((a) => a.name)}
            value={chosen}
            onChange={setChosen}
          />
        ) : null}
        <ErrorNote error={create.error} />
        <Button type="submit" variant="primary" busy={create.isPending}>
          Add secret
        </Button>
      </form>
    </Section>
  );
}
