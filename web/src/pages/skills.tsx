import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { api, unwrap, when } from '../api.ts';
import { useRoutedItem } from '../routed.ts';
import {
  Button,
  ButtonLink,
  ConfirmButton,
  DataTable,
  Empty,
  ErrorNote,
  Loading,
  Page,
  Section,
  TextArea,
  TextField,
} from '../ui.tsx';

type Skill = Awaited<ReturnType<typeof getSkill>>;

function getSkill(id: string) {
  return unwrap(api.GET('/v1/skills/{id}', { params: { path: { id } } }));
}

export function useSkills() {
  return useQuery({
    queryKey: ['skills'],
    queryFn: () => unwrap(api.GET('/v1/skills', { params: { query: { limit: 200 } } })),
  });
}

export function SkillsPage() {
  const skills = useSkills();
  return (
    <Page
      title="Skills"
      actions={
        <ButtonLink to="/skills/new" variant="primary">
          New skill
        </ButtonLink>
      }
    >
      <p className="muted lead">
        A skill is a set of instructions an agent loads when it needs them: the model sees each skill's
        description in every task and loads the instructions with load_skill.
      </p>
      <Section title="Skills">
        <DataTable
          list={skills}
          what="skills"
          rowKey={(skill) => skill.id}
          empty={
            <Empty title="No skills yet." action={<ButtonLink to="/skills/new">Write a skill</ButtonLink>}>
              Write down how your team does something (a release, a report), then give it to agents on their
              page.
            </Empty>
          }
          columns={[
            { header: 'Name', cell: (skill) => <Link to={`/skills/${skill.id}`}>{skill.name}</Link> },
            { header: 'Description', cell: (skill) => skill.description, wrap: true },
            { header: 'Length', cell: (skill) => `${skill.content_chars} characters` },
            { header: 'Updated', cell: (skill) => when(skill.updated_at) },
          ]}
        />
      </Section>
    </Page>
  );
}

export function SkillFormPage() {
  const { id, query: skill } = useRoutedItem('skills', getSkill);
  if (id === undefined) return <SkillForm />;
  if (skill.isPending) return <Loading what="the skill" />;
  if (skill.isError) return <ErrorNote error={skill.error} />;
  return <SkillForm skill={skill.data} key={`${skill.data.id}-${skill.data.updated_at}`} />;
}

function SkillForm(props: { skill?: Skill }) {
  const existing = props.skill;
  const client = useQueryClient();
  const navigate = useNavigate();
  const [name, setName] = useState(existing?.name ?? '');
  const [description, setDescription] = useState(existing?.description ?? '');
  const [content, setContent] = useState(existing?.content ?? '');
  // After a delete only the list is fetched again: the skill's own query would answer 404.
  const done = async (deleted: boolean) => {
    await client.invalidateQueries({ queryKey: ['skills'], exact: deleted });
    void navigate('/skills');
  };
  const save = useMutation({
    mutationFn: (): Promise<unknown> => {
      const body = { name, description, content };
      return existing
        ? unwrap(api.PATCH('/v1/skills/{id}', { params: { path: { id: existing.id } }, body }))
        : unwrap(api.POST('/v1/skills', { body }));
    },
    onSuccess: () => done(false),
  });
  const remove = useMutation({
    mutationFn: () => unwrap(api.DELETE('/v1/skills/{id}', { params: { path: { id: existing!.id } } })),
    onSuccess: () => done(true),
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    save.mutate();
  };
  return (
    <Page
      title={existing ? `Skill ${existing.name}` : 'New skill'}
      actions={
        existing ? (
          <ConfirmButton
            label="Delete"
            name={existing.name}
            question={`Delete the skill ${existing.name}? (An agent that lists it must drop it first.)`}
            busy={remove.isPending}
            onConfirm={() => remove.mutate()}
          />
        ) : null
      }
    >
      <ErrorNote error={remove.error} />
      <form onSubmit={submit}>
        <Section title="Skill">
          <TextField
            label="Name"
            required
            placeholder="release-notes"
            hint="What the model passes to load_skill: lower-case letters, digits, _ and -."
            value={name}
            onChange={(e) => setName(e.target.value)}
          />
          <TextField
            label="Description"
            required
            hint="When to use it: the model decides from this alone whether to load the skill."
            value={description}
            onChange={(e) => setDescription(e.target.value)}
          />
          <TextArea
            label="Instructions"
            required
            rows={12}
            hint="Markdown. The model reads them only after it loads the skill."
            value={content}
            onChange={(e) => setContent(e.target.value)}
          />
        </Section>
        <ErrorNote error={save.error} />
        <div className="actions">
          <Button type="submit" variant="primary" busy={save.isPending}>
            {existing ? 'Save changes' : 'Create skill'}
          </Button>
          <ButtonLink to="/skills">Cancel</ButtonLink>
        </div>
      </form>
    </Page>
  );
}
