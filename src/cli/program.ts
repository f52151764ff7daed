import type { Command } from 'commander';
import { EXIT } from './exit-codes.ts';

// The commands that talk to a server over the API. Each one's module is
// imported when it runs, so `paddock --help` loads none of them. Every command
// takes --json; every failure is one line on stderr (and with --json also
// `{"error": …}` on stdout) and an exit code from exit-codes.ts.

/** A command's work; a number it answers is the exit code. */
type Action = (...args: never[]) => Promise<unknown>;

/** Runs an action, prints its failure, and exits with its code (open sockets would keep the process alive). */
function act<M>(load: () => Promise<M>, pick: (m: M) => Action) {
  return async (...args: unknown[]) => {
    // The reader of stdout went away (`| head`): stop quietly, as a program SIGPIPE ends would.
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      process.exit(EXIT.brokenPipe);
    });
    const command = args.at(-1) as Command;
    const json = command.opts().json === true;
    let code: number;
    try {
      const result = await pick(await load())(...(args.slice(0, -1) as never[]));
      code = typeof result === 'number' ? result : EXIT.ok;
    } catch (err) {
      const { describeFailure } = await import('./context.ts');
      const { PaddockError } = await import('../../sdk/src/index.ts');
      const failure = describeFailure(err);
      process.stderr.write(`paddock: ${failure.message}\n`);
      if (json) {
        const error =
          err instanceof PaddockError
            ? { status: err.status, code: err.code, message: err.message, details: err.details ?? {} }
            : { code: 'cli_error', message: failure.message };
        process.stdout.write(`${JSON.stringify({ error }, null, 2)}\n`);
      }
      code = failure.exitCode;
    }
    process.exit(code);
  };
}

const tasks = () => import('./tasks.ts');
const capsules = () => import('./capsules.ts');
const resources = () => import('./resources.ts');
const login = () => import('./login.ts');

function withJson(command: Command): Command {
  return command.option('--json', 'print JSON only (for scripts)');
}

/** A list command's paging: --limit, and --cursor with a page's next_cursor (the hint on stderr names it). */
function paged(command: Command): Command {
  return command
    .option('--limit <n>', "at most this many (1 to 200; the API's default: 50)")
    .option('--cursor <cursor>', "the next page: the last page's next_cursor");
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function addApiCommands(program: Command): void {
  withJson(
    program
      .command('login')
      .description('save a server address and a token for the commands below')
      .option('--url <url>', 'the server (default: PADDOCK_URL, else asked; http://127.0.0.1:8080)')
      .option('--token <token>', 'an API key (pdk_…) or session token; else asked, or read from stdin')
      .option(
        '--email <email>',
        'sign in with e-mail and password (asked, or the first line of stdin) instead',
      )
      .option('--scope <scope>', 'with --email: the scope of the API key made for this machine', 'admin')
      .addHelpText(
        'after',
        '\nThe login is saved in $XDG_CONFIG_HOME/paddock/config.json (else ~/.config/paddock/config.json),\n' +
          'readable by you alone. PADDOCK_URL and PADDOCK_TOKEN, when set, win over it.',
      ),
  ).action(act(login, (m) => m.login));
  withJson(
    program.command('logout').description('forget the saved login (and revoke the key login made)'),
  ).action(act(login, (m) => m.logout));

  const agents = program.command('agents').description("the team's agents");
  withJson(paged(agents.command('list').description('list the agents'))).action(
    act(resources, (m) => m.listAgents),
  );
  withJson(agents.command('get').description('one agent').argument('<agent>', 'name or id')).action(
    act(resources, (m) => m.getAgent),
  );

  const t = program.command('tasks').description('hand agents tasks and follow them');
  withJson(
    t
      .command('run')
      .description('hand an agent a task, stream its progress, print its result and cost')
      .argument('<prompt>', 'what to do')
      .requiredOption('-a, --agent <agent>', 'the agent: name or id')
      .option('--model <model>', "instead of the agent's model")
      .option('--max-turns <n>', 'model calls at most')
      .option('--max-budget <usd>', 'the most the task may cost, in USD')
      .option('--timeout <sec>', 'end the task after this many seconds')
      .option('-d, --detach', 'print the task id and return at once')
      .addHelpText(
        'after',
        '\nProgress goes to stderr (a spinner on a terminal), the result to stdout, the cost last.\n' +
          `Ctrl-C cancels the task and exits ${EXIT.interrupted}; a task that fails exits ${EXIT.taskFailed}.`,
      ),
  ).action(act(tasks, (m) => m.runTask));
  withJson(
    paged(
      t
        .command('list')
        .description('the newest tasks first')
        .option('--status <status>', 'queued, running, awaiting_approval, completed, failed or cancelled')
        .option('-a, --agent <agent>', 'one agent’s (name or id)'),
    ),
  ).action(act(tasks, (m) => m.listTasks));
  withJson(t.command('get').description('one task').argument('<id>')).action(act(tasks, (m) => m.getTask));
  withJson(t.command('cancel').description('cancel a queued or running task').argument('<id>')).action(
    act(tasks, (m) => m.cancelTask),
  );
  withJson(
    t
      .command('logs')
      .description("a task's events (with --json: one JSON object a line)")
      .argument('<id>')
      .option('-f, --follow', 'keep following until the task ends'),
  ).action(act(tasks, (m) => m.taskLogs));

  const c = program.command('capsules').description('sandboxes: create them, run commands, open a shell');
  c.enablePositionalOptions();
  withJson(
    c
      .command('create')
      .description('start a capsule and wait until it runs; prints its id')
      .option('--template <name>', 'a template or snapshot (default: minimal)')
      .option('--vcpus <n>', 'CPUs')
      .option('--memory <mb>', 'memory in MB')
      .option('--timeout <sec>', 'pause after this long unused (0: never)')
      .option('--no-wait', 'return while it is still starting'),
  ).action(act(capsules, (m) => m.createCapsule));
  withJson(
    paged(
      c
        .command('list')
        .description("the team's capsules")
        .option('--status <status>', 'only those in this status'),
    ),
  ).action(act(capsules, (m) => m.listCapsules));
  withJson(c.command('get').description('one capsule').argument('<id>')).action(
    act(capsules, (m) => m.getCapsule),
  );
  withJson(c.command('delete').description('stop a capsule and remove it').argument('<id>')).action(
    act(capsules, (m) => m.deleteCapsule),
  );
  withJson(
    c
      .command('exec')
      .description("run a command in a capsule; exits with the command's exit code")
      .argument('<id>')
      .argument('<command...>', 'one argument: a shell line (sh -c); more: the program and its arguments')
      .option('--timeout <sec>', 'kill it after this many seconds (default 30)')
      .option('--cwd <dir>', 'the directory to run it in')
      .passThroughOptions()
      .addHelpText(
        'after',
        '\nOptions go before the capsule id; everything after it is the command.\n' +
          "Examples: paddock capsules exec cap_… ls -la /tmp\n          paddock capsules exec --json cap_… 'make test 2>&1 | tail'",
      ),
  ).action(act(capsules, (m) => m.execInCapsule));
  c.command('shell')
    .description('an interactive terminal in a capsule')
    .argument('<id>')
    .option('--cmd <program>', 'instead of /bin/bash')
    .option('--tag <tag>', 'reattach to the terminal of this tag')
    .action(act(capsules, (m) => m.shellInCapsule));

  const p = program.command('playbooks').description('scheduled and triggered work');
  withJson(paged(p.command('list').description('the playbooks'))).action(
    act(resources, (m) => m.listPlaybooks),
  );
  withJson(p.command('fire').description('fire a playbook now').argument('<id>')).action(
    act(resources, (m) => m.firePlaybook),
  );
  withJson(paged(p.command('runs').description("a playbook's runs").argument('<id>'))).action(
    act(resources, (m) => m.listPlaybookRuns),
  );

  const r = program.command('runs').description('gateway runs: every model call of an agent session or task');
  withJson(
    paged(
      r
        .command('list')
        .description('the newest runs first')
        .option('-a, --agent <agent>', 'one agent’s (name or id)')
        .option('--status <status>', 'running, completed, failed, budget_exceeded or force_stopped'),
    ),
  ).action(act(resources, (m) => m.listRuns));
  withJson(r.command('get').description('one run').argument('<id>')).action(act(resources, (m) => m.getRun));

  const k = program.command('keys').description('team API keys (pdk_…)');
  withJson(paged(k.command('list').description('the keys'))).action(act(resources, (m) => m.listKeys));
  withJson(
    k
      .command('create')
      .description('make a key; prints it (shown once)')
      .argument('<name>')
      .option('--scope <scope>', 'read, write or admin (repeat for several; default write)', collect),
  ).action(act(resources, (m) => m.createKey));
  withJson(k.command('revoke').description('revoke a key for good').argument('<id>')).action(
    act(resources, (m) => m.revokeKey),
  );

  const q = program.command('queues').description('work queues for outside workers');
  withJson(paged(q.command('list').description('the queues with their jobs counted'))).action(
    act(resources, (m) => m.listQueues),
  );
}
