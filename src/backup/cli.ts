import type { Command } from 'commander';

// `paddock backup` and `paddock restore`: declared here, done in
// commands.ts (loaded when one runs, so `paddock --help` loads none of it).

export function addBackupCommands(program: Command, dataDir: readonly [string, string]): void {
  program
    .command('backup')
    .description(
      'write a backup of the data dir (database, master key, files) to <file>, while the server runs or not',
    )
    .argument('<file>', 'the archive to write (a .tar.gz; it must not exist yet)')
    .option(...dataDir)
    .action(async (file: string, flags: { dataDir?: string }) => {
      const { runBackup } = await import('./commands.ts');
      await runBackup(file, flags);
    });
  program
    .command('restore')
    .description('restore a backup made by paddock backup into a new data dir')
    .argument('<file>', 'the archive paddock backup wrote')
    .option(...dataDir)
    .option('--force', 'replace what the data dir holds (never while a server uses it)')
    .action(async (file: string, flags: { dataDir?: string; force?: boolean }) => {
      const { runRestore } = await import('./commands.ts');
      await runRestore(file, flags);
    });
}
