import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// Skills in a real task, against the mock provider: the prompt names each
// skill with its description, and the content reaches the model only as the
// result of a load_skill call.

let f: TaskFixture;

beforeAll(async () => {
  f = await startTasks();
});
afterAll(async () => {
  await f?.close();
});

let n = 0;
async function skill(label: string, description: string, content: string): Promise<Json> {
  n += 1;
  const res = await f.t.call('POST', '/v1/skills', {
    token: f.user.token,
    body: { name: `${label}-${n}`, description, content },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body;
}

type Message = { role: string; content: unknown; tool_call_id?: string };

function messagesOf(i: number): Message[] {
  return (f.mock.requests[i]!.body as Json).messages;
}

function toolNamesOf(i: number): string[] {
  return ((f.mock.requests[i]!.body as Json).tools ?? []).map((t: Json) => t.function.name);
}

describe('load_skill', () => {
  it('a skill loaded on demand appears in the prompt only after load_skill', async () => {
    const notes = await skill(
      'release-notes',
      'How we write release notes:\n  grouped by area',
      '# Release notes\nMARKER-NOTES-31d9: group changes by area, link every PR.',
    );
    const triage = await skill(
      'triage',
      'Triaging bug reports',
      'MARKER-TRIAGE-8b2f: label, reproduce, assign.',
    );
    const agent = await f.agent({ agent: { skill_ids: [notes.id, triage.id] } });
    f.mock.reset();
    f.script([
      { tool: 'load_skill', args: { name: notes.name } },
      { tool: 'submit_result', args: { result: 'notes written' } },
    ]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'write the release notes' });
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'completed', result: 'notes written', turns: 2 });
    expect(f.mock.requests).toHaveLength(2);

    // First request: both skills named and described (the description on one line), no content.
    const first = JSON.stringify(messagesOf(0));
    const system = messagesOf(0)[0]!.content as string;
    expect(system).toContain(`- ${notes.name}: How we write release notes: grouped by area`);
    expect(system).toContain(`- ${triage.name}: Triaging bug reports`);
    expect(system).toContain('call load_skill');
    expect(first).not.toContain('MARKER-NOTES-31d9');
    expect(first).not.toContain('MARKER-TRIAGE-8b2f');
    expect(toolNamesOf(0)).toContain('load_skill');

    // Second request: the loaded skill's whole content, as the result of the call; the other still not.
    const toolMessages = messagesOf(1).filter((m) => m.role === 'tool');
    expect(toolMessages).toHaveLength(1);
    expect(toolMessages[0]!.content).toBe(notes.content);
    expect(JSON.stringify(messagesOf(1))).not.toContain('MARKER-TRIAGE-8b2f');

    const events = await f.events(task.id);
    const result = events.find((e) => e.type === 'tool_result' && e.payload.name === 'load_skill');
    expect(result?.payload).toMatchObject({ ok: true, output: notes.content });
  });

  it("lists no skills when the task's allowed_tools leave load_skill out", async () => {
    const s = await skill('hidden', 'A skill the task may not load', 'MARKER-HIDDEN-77c1');
    const agent = await f.agent({ agent: { skill_ids: [s.id] } });
    f.mock.reset();
    f.script([{ tool: 'submit_result', args: { result: 'done' } }]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'work', allowed_tools: ['list_files'] });
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'completed', result: 'done' });
    const system = messagesOf(0)[0]!.content as string;
    expect(system).not.toContain(s.name);
    expect(system).not.toContain('load_skill');
    expect(toolNamesOf(0)).not.toContain('load_skill');
  });

  it('answers an unknown name or bad arguments with ok:false naming the skills, and the task goes on', async () => {
    const s = await skill('deploys', 'Deploying the service', 'MARKER-DEPLOY-5a6e');
    const agent = await f.agent({ agent: { skill_ids: [s.id] } });
    f.mock.reset();
    f.script([
      { tool: 'load_skill', args: { name: 'no-such-skill' } },
      { tool: 'load_skill', args: { skill: s.name } },
      { tool: 'load_skill', args: { name: s.name } },
      { tool: 'load_skill', args: { name: 42 } },
      { tool: 'submit_result', args: { result: 'done' } },
    ]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'deploy' });
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'completed', result: 'done' });
    const results = (await f.events(task.id))
      .filter((e) => e.type === 'tool_result' && e.payload.name === 'load_skill')
      .map((e) => e.payload);
    expect(results.map((r) => r.ok)).toEqual([false, false, true, false]);
    expect(results[0]!.output).toBe(`There is no skill named "no-such-skill"; the skills are: ${s.name}.`);
    expect(results[1]!.output).toContain('unknown field "skill"');
    expect(results[2]!.output).toBe('MARKER-DEPLOY-5a6e');
    expect(results[3]!.output).toContain('"name" must be a string');
  });

  it('loads the skill as the task listed it, even when it is edited while the task runs', async () => {
    const s = await skill('style', 'Style guide v1', 'MARKER-STYLE-V1');
    // An approval on load_skill holds the task between its model calls, so the edit lands mid-task.
    const agent = await f.agent({
      policy: { require_approval: ['load_skill'] },
      agent: { skill_ids: [s.id] },
    });
    f.mock.reset();
    f.script([
      { tool: 'load_skill', args: { name: s.name } },
      { tool: 'submit_result', args: { result: 'styled' } },
    ]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'style it' });
    let seq = 0;
    for (let i = 0; i < 2; i++) {
      const asking = await f.untilEvent(
        submitted.id,
        (e) => e.seq > seq && e.type === 'status' && e.payload.status === 'awaiting_approval',
      );
      seq = asking.seq;
      expect(asking.payload.tools).toEqual(['load_skill']);
      if (i === 0) {
        const edit = await f.t.call('PATCH', `/v1/skills/${s.id}`, {
          token: f.user.token,
          body: { description: 'Style guide v2', content: 'MARKER-STYLE-V2' },
        });
        expect(edit.status).toBe(200);
      }
      for (const id of asking.payload.approval_ids) {
        const ok = await f.t.call('POST', `/v1/approvals/${id}/approve`, { token: f.user.token });
        expect(ok.status, JSON.stringify(ok.body)).toBe(200);
      }
    }
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'completed', result: 'styled' });
    expect(messagesOf(0)[0]!.content as string).toContain(`- ${s.name}: Style guide v1`);
    expect(messagesOf(1).find((m) => m.role === 'tool')!.content).toBe('MARKER-STYLE-V1');
    expect(JSON.stringify(f.mock.requests.map((r) => r.body))).not.toContain('V2');
  }, 60_000);

  it('skips a skill deleted since the agent version was written, and offers no load_skill without skills', async () => {
    const kept = await skill('kept', 'Still here', 'MARKER-KEPT');
    const gone = await skill('gone', 'Deleted later', 'MARKER-GONE');
    const agent = await f.agent({ agent: { skill_ids: [gone.id, kept.id] } });
    // Version 2 lists none, so the skill may be deleted; version 1 still lists both.
    const v2 = await f.t.call('PATCH', `/v1/agents/${agent.id}`, {
      token: f.user.token,
      body: { skill_ids: [] },
    });
    expect(v2.body.version).toBe(2);
    const del = await f.t.call('DELETE', `/v1/skills/${gone.id}`, { token: f.user.token });
    expect(del.status).toBe(204);

    f.mock.reset();
    f.script([{ text: 'ok' }, { text: 'ok' }]);
    const old = await f.finished((await f.submit({ agent_id: agent.id, agent_version: 1, prompt: 'x' })).id);
    expect(old.task.status).toBe('completed');
    const system = messagesOf(0)[0]!.content as string;
    expect(system).toContain(`- ${kept.name}: Still here`);
    expect(system).not.toContain(gone.name);
    expect(toolNamesOf(0)).toContain('load_skill');

    const current = await f.finished((await f.submit({ agent_id: agent.id, prompt: 'x' })).id);
    expect(current.task.status).toBe('completed');
    expect(messagesOf(1)[0]!.content as string).not.toContain('Skills:');
    expect(toolNamesOf(1)).not.toContain('load_skill');
  });
});
