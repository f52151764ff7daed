import { existsSync } from 'node:fs';
import path from 'node:path';
import { EXIT } from '../cli/exit-codes.ts';
import { type Config, ConfigError, loadConfig } from '../config.ts';
import { describeError } from '../core/error-log.ts';
import { MIGRATIONS_DIR, openPglite } from '../db/client.ts';
import { DataDirLockedError, lockHolder } from '../db/data-dir-lock.ts';
import { readJournal, schemaLevel } from '../db/migration-level.ts';
import { type DatabaseSource, writeBackup } from './backup.ts';
import { CorruptArchiveError, RefusedError } from './errors.ts';
import { schemaOf } from './manifest.ts';
import { restoreBackup } from './restore.ts';
import { askServer, downloadDatabase, type ServerInfo, socketPathOf } from './socket.ts';

function note(line: string): void {
  process.stderr.write(`paddock: ${line}\n`);
}

/** Prints a failure and exits with its code (docs/cli.md "backup and restore"). */
function stop(err: unknown, what: string): never {
  if (err instanceof RefusedError) {
    note(`${what} refused: ${err.message}`);
    process.exit(EXIT.refused);
  }
  if (err instanceof CorruptArchiveError)
    note(`${what} failed: the archive is not a usable backup: ${err.message}`);
  else if (err instanceof ConfigError || err instanceof DataDirLockedError) note(err.message);
  else note(`${what} failed: ${describeError(err)}`);
  process.exit(EXIT.error);
}

function configFor(flags: { dataDir?: string }): Config {
  return loadConfig(process.env, flags.dataDir !== undefined ? { dataDir: flags.dataDir } : {});
}

const MB = 1024 * 1024;

export async function runBackup(file: string, flags: { dataDir?: string }): Promise<void> {
  try {
    const config = configFor(flags);
    if (config.databaseUrl)
      throw new RefusedError(
        'DATABASE_URL is set: paddock backup copies the embedded database only. Back up Postgres with ' +
          'pg_dump, and keep the master key (PADDOCK_MASTER_KEY) beside the dump (docs/operations.md "Backup and restore")',
      );
    const target = path.resolve(file);
    if (existsSync(target)) throw new RefusedError(`${file} exists: give the backup a new name`);
    if (!existsSync(path.join(config.dataDir, 'pgdata', 'PG_VERSION')))
      throw new Error(`${config.dataDir} holds no Paddock database (is --data-dir right?)`);
    const result = await withSource(config, (source) =>
      writeBackup({ dataDir: config.dataDir, file: target, now: new Date(), source }),
    );
    const { manifest } = result;
    process.stdout.write(
      `backup written to ${file}: ${result.files} files, ${(result.bytes / MB).toFixed(1)} MB before compression, ` +
        `schema at ${manifest.schema.last_migration ?? 'no migration'}, ` +
        `${manifest.source.server_running ? 'dumped by the running server' : 'taken with no server running'}\n`,
    );
    for (const name of result.skipped)
      note(`warning: left out ${name} (neither a file, a folder nor a link)`);
    if (manifest.contents.master_key)
      note(
        `warning: ${file} holds master.key, which opens every secret and token in it: keep it as safe as they are (it is mode 0600)`,
      );
    else
      note(
        'warning: the master key is not in the backup (this server takes it from PADDOCK_MASTER_KEY): ' +
          'keep that value with the backup; without it the restored secrets and API keys cannot be used',
      );
  } catch (err) {
    stop(err, 'backup');
  }
}

/**
 * The database's dump comes from this process when no server holds the data
 * dir (it takes the lock for the whole backup, so none starts meanwhile),
 * else from the server over its backup socket.
 */
async function withSource<T>(config: Config, use: (source: DatabaseSource) => Promise<T>): Promise<T> {
  const journal = readJournal(MIGRATIONS_DIR);
  let database: Awaited<ReturnType<typeof openPglite>> | undefined;
  try {
    database = await openPglite({ dataDir: config.dataDir });
  } catch (err) {
    if (!(err instanceof DataDirLockedError)) throw err;
  }
  if (database) {
    const db = database;
    try {
      return await use({
        serverRunning: false,
        schema: schemaOf(await schemaLevel(db.db, journal)),
        sandboxDir: config.sandboxDir,
        masterKey: config.masterKey ? 'environment' : 'file',
        dumpTo: async (file) => {
          await db.dumpTo!(file);
        },
      });
    } finally {
      await db.close();
    }
  }
  const socket = socketPathOf(config.dataDir);
  const pid = lockHolder(config.dataDir);
  const unanswered = (why: string) =>
    new Error(
      `a Paddock server (pid ${pid ?? '?'}) holds ${config.dataDir} but ${why}. It may still be starting: ` +
        'try again once it is ready; an older Paddock, or a data dir path too long for a socket, has none: ' +
        'stop the server and run paddock backup again',
    );
  const info = await askServer(socket, '/info').catch(() => {
    throw unanswered(`does not answer on ${socket}`);
  });
  if (info.status !== 200) throw unanswered(`answered ${info.status} on ${socket}`);
  const server = JSON.parse(info.body.toString('utf8')) as ServerInfo;
  return use({
    serverRunning: true,
    schema: schemaOf(server.schema),
    sandboxDir: server.sandbox_dir,
    masterKey: server.master_key,
    dumpTo: (file) => downloadDatabase(socket, file),
  });
}

export async function runRestore(file: string, flags: { dataDir?: string; force?: boolean }): Promise<void> {
  try {
    const config = configFor(flags);
    const result = await restoreBackup({ file, dataDir: config.dataDir, force: flags.force === true });
    const { manifest } = result;
    process.stdout.write(
      `restored ${file} into ${config.dataDir}${result.replaced ? ' (replacing what it held)' : ''}: ` +
        `made by Paddock ${manifest.paddock_version} at ${manifest.created_at}, ` +
        `schema at ${manifest.schema.last_migration ?? 'no migration'} (a server migrates it forward when it starts)\n`,
    );
    if (!manifest.contents.master_key)
      note(
        'warning: the backup holds no master key (its server took it from PADDOCK_MASTER_KEY): ' +
          'start the restored server with the same PADDOCK_MASTER_KEY, or its secrets and API keys cannot be used',
      );
    if (config.databaseUrl)
      note(
        'warning: DATABASE_URL is set, but the restored data dir holds an embedded database: unset it to use it',
      );
  } catch (err) {
    stop(err, 'restore');
  }
}
