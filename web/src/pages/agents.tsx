import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { api, unwrap, when } from '../api.ts';
import {
  Badge,
  Button,
  ButtonLink,
  Checkboxes,
  DataTable,
  Empty,
  ErrorNote,
  Loading,
  Page,
  Section,
  SelectField,
  ShownOnce,
  TextArea,
  TextField,
} from '../ui.tsx';
import { KeyAndFork, TryIt } from './agent-actions.tsx';
import { environmentOptions, useEnvironments } from './environments.tsx';
import { usePolicies } from './policies.tsx';
import { useProviderKeys } from './provider-keys.tsx';
import { useSkills } from './skills.tsx';

/** The tools an agent may be given (the capsule's built-ins and web_fetch). */
const TOOLS = [
  'bash',
  'read_file',
  'write_file',
  'edit_file',
  'list_files',
  'grep',
  'submit_result',
  'web_fetch',
] as const;

type Agent = Awaited<ReturnType<typeof getAgent>>;

function getAgent(id: string) {
  return unwrap(api.GET('/v1/agents/{id}', { params: { path: { id } } }));
}

export function useAgent(id: string | undefined) {
  return useQuery({ queryKey: ['agents', id], queryFn: () => getAgent(id!), enabled: id !== undefined });
}

export function useAgents() {
  return useQuery({
    queryKey: ['agents'],
    queryFn: () => unwrap(api.GET('/v1/agents', { params: { query: { limit: 200 } } })),
  });
}

export function AgentsPage() {
  const agents = useAgents();
  const policies = usePolicies();
  const policyName = (id: string) => policies.data?.data.find((p) => p.id === id)?.name ?? id;
  return (
    <Page
      title="Agents"
      actions={
        <ButtonLink to="/agents/new" variant="primary">
          New agent
        </ButtonLink>
      }
    >
      <p className="muted lead">
        An agent is a model, a system prompt and tools, run under a policy with your provider keys. Give it a
        task from the Tasks page.
      </p>
      <Section title="Agents">
        <DataTable
          list={agents}
          what="agents"
          rowKey={(agent) => agent.id}
          empty={
            <Empty title="No agents yet." action={<ButtonLink to="/agents/new">Create an agent</ButtonLink>}>
              You need a provider key and a policy first; then pick a model and the tools it may use.
            </Empty>
          }
          columns={[
            { header: 'Name', cell: (agent) => <Link to={`/agents/${agent.id}`}>{agent.name}</Link> },
            { header: 'Model', cell: (agent) => agent.model },
            { header: 'Policy', cell: (agent) => policyName(agent.policy_id) },
            { header: 'Tools', cell: (agent) => agent.tools.join(', '), wrap: true },
            { header: 'Status', cell: (agent) => <Badge status={agent.status} /> },
            { header: 'Version', cell: (agent) => agent.version },
            { header: 'Updated', cell: (agent) => when(agent.updated_at) },
          ]}
        />
      </Section>
    </Page>
  );
}

export function AgentFormPage() {
  const { id } = useParams();
  const agent = useAgent(id);
  if (id === undefined) return <AgentForm />;
  if (agent.isPending) return <Loading what="the agent" />;
  if (agent.isError) return <ErrorNote error={agent.error} />;
  return <AgentForm agent={agent.data} key={`${agent.data.id}-${agent.data.version}`} />;
}

/** The one key an agent is bound to (the form binds one; the API also takes weighted lists). */
function boundKey(agent: Agent | undefined): string {
  const first = agent ? Object.values(agent.provider_keys)[0] : undefined;
  return typeof first === 'string' ? first : (first?.[0]?.key_id ?? '');
}

function AgentForm(props: { agent?: Agent }) {
  const existing = props.agent;
  const client = useQueryClient();
  const navigate = useNavigate();
  const keys = useProviderKeys();
  const policies = usePolicies();
  const [name, setName] = useState(existing?.name ?? '');
  const [model, setModel] = useState(existing?.model ?? '');
  const [systemPrompt, setSystemPrompt] = useState(existing?.system_prompt ?? '');
  const [tools, setTools] = useState<string[]>(existing?.tools ?? [...TOOLS]);
  const skills = useSkills();
  const skillList = skills.data?.data ?? [];
  const [skillIds, setSkillIds] = useState<string[]>(existing?.skill_ids ?? []);
  const [memory, setMemory] = useState(existing?.memory_enabled ?? false);
  const [keyId, setKeyId] = useState(boundKey(existing));
  const [policyId, setPolicyId] = useState(existing?.policy_id ?? '');
  const environments = useEnvironments();
  const [environmentId, setEnvironmentId] = useState(existing?.environment_id ?? 'env_minimal');
  const [agentKey, setAgentKey] = useState<string>();

  const keyList = keys.data?.data ?? [];
  const policyList = policies.data?.data ?? [];
  const chosenKey = keyList.find((k) => k.id === (keyId || keyList[0]?.id));
  const chosenPolicy = policyId || policyList[0]?.id || '';

  const save = useMutation({
    mutationFn: async () => {
      const body = {
        name,
        ...(model.trim() ? { model: model.trim() } : {}),
        system_prompt: systemPrompt.trim() ? systemPrompt : null,
        tools: tools as Array<(typeof TOOLS)[number]>,
        skill_ids: skillIds,
        memory_enabled: memory,
        policy_id: chosenPolicy,
        provider_keys: chosenKey ? { [chosenKey.provider]: chosenKey.id } : {},
        // Sent only when changed: naming it again would pin its newest version.
        ...(environmentId !== existing?.environment_id ? { environment_id: environmentId } : {}),
      };
      if (existing) {
        await unwrap(api.PATCH('/v1/agents/{id}', { params: { path: { id: existing.id } }, body }));
        return undefined;
      }
      return (await unwrap(api.POST('/v1/agents', { body }))).api_key;
    },
    onSuccess: async (key) => {
      await client.invalidateQueries({ queryKey: ['agents'] });
      if (key) setAgentKey(key);
      else void navigate('/agents');
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    save.mutate();
  };

  if (agentKey) {
    return (
      <Page title="Agent created">
        <ShownOnce
          label="The agent's own key (pda_…), for an agent that runs elsewhere and calls Paddock itself"
          value={agentKey}
          onDone={() => void navigate('/tasks')}
        />
        <p className="muted">Next: give it a task on the Tasks page.</p>
      </Page>
    );
  }
  const missing = keys.data && policies.data && (keyList.length === 0 || policyList.length === 0);
  return (
    <Page
      title={existing ? `Agent ${existing.name}` : 'New agent'}
      actions={
        existing ? (
          <ButtonLink to={`/agents/${existing.id}/versions`}>Versions (now v{existing.version})</ButtonLink>
        ) : null
      }
    >
      {missing ? (
        <Empty title="An agent needs a provider key and a policy.">
          {keyList.length === 0 ? <Link to="/provider-keys">Add a provider key</Link> : null}
          {keyList.length === 0 && policyList.length === 0 ? ' and ' : null}
          {policyList.length === 0 ? <Link to="/policies/new">create a policy</Link> : null} first.
        </Empty>
      ) : null}
      <form onSubmit={submit}>
        <Section title="Agent">
          <div className="grid-form">
            <TextField label="Name" required value={name} onChange={(e) => setName(e.target.value)} />
            <TextField
              label="Model"
              placeholder="gpt-4o-mini"
              hint="A model id, or a family alias (sonnet, haiku, gpt-…). Empty: the server's default."
              value={model}
              onChange={(e) => setModel(e.target.value)}
            />
            <SelectField
              label="Provider key"
              hint="The model calls are made with this key."
              options={keyList.map((k) => ({ value: k.id, label: `${k.name} (${k.provider})` }))}
              value={chosenKey?.id ?? ''}
              onChange={(e) => setKeyId(e.target.value)}
            />
            <SelectField
              label="Policy"
              options={policyList.map((p) => ({ value: p.id, label: p.name }))}
              value={chosenPolicy}
              onChange={(e) => setPolicyId(e.target.value)}
            />
            <SelectField
              label="Environment"
              hint="What its sandbox starts from; a change pins the environment's current version."
              options={environmentOptions(environments.data?.data, environmentId)}
              value={environmentId}
              onChange={(e) => setEnvironmentId(e.target.value)}
            />
          </div>
          <TextArea
            label="System prompt"
            rows={6}
            value={systemPrompt}
            onChange={(e) => setSystemPrompt(e.target.value)}
          />
          <Checkboxes
            legend="Tools"
            hint="They run in the task's sandbox; the policy may still block some or ask for approval."
            choices={TOOLS}
            value={tools}
            onChange={setTools}
          />
          {skillList.length > 0 ? (
            <Checkboxes
              legend="Skills"
              hint="It sees each one's description and loads the instructions when it needs them."
              choices={skillList.map((k) => k.name)}
              value={skillList.filter((k) => skillIds.includes(k.id)).map((k) => k.name)}
              onChange={(names) =>
                setSkillIds(skillList.filter((k) => names.includes(k.name)).map((k) => k.id))
              }
            />
          ) : null}
          <label className="check">
            <input type="checkbox" checked={memory} onChange={(e) => setMemory(e.target.checked)} /> Memory:
            it saves and searches what it learns, across tasks (see Memories)
          </label>
        </Section>
        <ErrorNote error={save.error} />
        <div className="actions">
          <Button type="submit" variant="primary" busy={save.isPending}>
            {existing ? 'Save changes' : 'Create agent'}
          </Button>
          <ButtonLink to="/agents">Cancel</ButtonLink>
        </div>
      </form>
      {existing ? <TryIt agent={existing} /> : null}
      {existing ? <KeyAndFork agent={existing} /> : null}
    </Page>
  );
}
