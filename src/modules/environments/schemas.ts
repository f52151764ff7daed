import { Type } from 'typebox';
import { Body, ListQuery, Nullable, Paginated, Timestamp } from '../../http/schemas.ts';
import { EnvsSchema } from '../sandboxes/envs.ts';
import { Hostname, TemplateName } from '../sandboxes/schemas.ts';

export const EnvironmentName = Type.String({
  minLength: 1,
  maxLength: 100,
  pattern: '^[^\\s/](?:[^/]*[^\\s/])?$',
  description: 'unique among the team’s environments that are not archived; no "/"',
});

const Base = Type.String({
  ...TemplateName,
  description: 'minimal (the platform template), or a template (snapshot) of the team',
});

const SetupCommands = Type.Array(Type.String({ minLength: 1, maxLength: 10_000 }), {
  maxItems: 50,
  description:
    'run in order by bash in the build capsule, as the capsule user, in /workspace; the first that fails fails the build',
});

/**
 * A requirement as pip reads it (name, extras, version specifiers), never an
 * option ("-…"), a path or a URL: packages come from the index only.
 */
const PipPackage = Type.String({
  minLength: 1,
  maxLength: 200,
  // Not a file name either (a wheel or an archive would be read from the build's directory).
  not: { pattern: '\\.(whl|zip|tar|tgz|gz|bz2|xz)$' },
  pattern:
    '^[A-Za-z0-9][A-Za-z0-9._-]*(\\[[A-Za-z0-9._,-]+\\])?([<>=!~]=?[A-Za-z0-9.*+!-]+(,[<>=!~]=?[A-Za-z0-9.*+!-]+)*)?$',
});

/** A package as npm reads it (optionally @scope/, optionally @version or range), never an option, a path, a URL or git. */
const NpmPackage = Type.String({
  minLength: 1,
  maxLength: 214,
  not: { pattern: '\\.(tgz|tar|gz|zip)$' },
  pattern: '^(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*(@[A-Za-z0-9.^~<>=*+ |-]+)?$',
});

const Spec = {
  base: Type.Optional(Base),
  setup_commands: Type.Optional(SetupCommands),
  pip_packages: Type.Optional(Type.Array(PipPackage, { maxItems: 200, uniqueItems: true })),
  npm_packages: Type.Optional(Type.Array(NpmPackage, { maxItems: 200, uniqueItems: true })),
  env_vars: Type.Optional(EnvsSchema),
  network_allow: Type.Optional(
    Type.Array(Hostname, {
      maxItems: 100,
      uniqueItems: true,
      description: 'hosts the environment’s capsules may reach through the egress proxy; empty: no network',
    }),
  ),
};

export const CreateEnvironmentBody = Body({
  name: EnvironmentName,
  description: Type.Optional(Nullable(Type.String({ maxLength: 2000 }))),
  ...Spec,
});

export const UpdateEnvironmentBody = Body({
  name: Type.Optional(EnvironmentName),
  description: Type.Optional(Nullable(Type.String({ maxLength: 2000 }))),
  ...Spec,
});

export const ForkEnvironmentBody = Body({ name: Type.Optional(EnvironmentName) });

export const EnvironmentListQuery = ListQuery({});

export const VersionParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 100 }),
  n: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
});

const BuildError = Nullable(Type.Object({ code: Type.String(), message: Type.String() }));

export const EnvironmentVersion = Type.Object({
  id: Type.String(),
  environment_id: Type.String(),
  version: Type.Integer(),
  base: Type.String(),
  setup_commands: Type.Array(Type.String()),
  pip_packages: Type.Array(Type.String()),
  npm_packages: Type.Array(Type.String()),
  env_vars: Type.Record(Type.String(), Type.String()),
  network_allow: Type.Array(Type.String()),
  status: Type.Enum(['queued', 'building', 'ready', 'failed'], {
    description: 'queued → building → ready | failed; a task needs a ready version',
  }),
  template: Nullable(Type.String({ description: 'the template the build made' })),
  error: BuildError,
  build_started_at: Nullable(Timestamp),
  build_finished_at: Nullable(Timestamp),
  created_at: Timestamp,
});

export const Environment = Type.Object({
  id: Type.String(),
  team_id: Nullable(Type.String({ description: 'null for a platform environment' })),
  name: Type.String(),
  description: Nullable(Type.String()),
  platform: Type.Boolean({ description: 'read-only and forkable' }),
  forked_from: Nullable(Type.String()),
  current_version: EnvironmentVersion,
  archived: Type.Boolean(),
  created_at: Timestamp,
  updated_at: Timestamp,
});

export const Environments = Paginated(Environment);
export const EnvironmentVersions = Paginated(EnvironmentVersion);
