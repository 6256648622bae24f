import { parseArgs } from 'node:util';
import { subjectSchema } from '../functions/core/config';
import { ConfigError, formatPath } from '../functions/core/config';

/** `usage-pipeline <command>`: the local runtime and the operator's commands. */

const USAGE = `usage: usage-pipeline <command> [options]

  local [--config FILE] [--port N] [--persist DIR] [--demo | --no-demo] [--log-level LEVEL]
      Run the whole pipeline on this machine. Prints one line, READY {...}, on stdout when ready,
      and runs until Ctrl-C. With --demo it sends a generated stream, prints the totals and exits.

  subjects put --id ID --plan PLAN --anchor DAY [--time-zone TZ] [--contact EMAIL]... [--name NAME]
  subjects list
      Add or change a workspace, or list them, in the table named by SUBJECTS_TABLE
      (--endpoint URL for DynamoDB Local; --config FILE to check the plan exists).
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'local':
      return local(rest);
    case 'subjects':
      return subjects(rest);
    case undefined:
    case 'help':
    case '--help':
      process.stdout.write(USAGE);
      return 0;
    default:
      process.stderr.write(`unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

async function local(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string' },
      port: { type: 'string', default: '0' },
      persist: { type: 'string' },
      demo: { type: 'boolean', default: false },
      'no-demo': { type: 'boolean', default: false },
      'log-level': { type: 'string' },
    },
    strict: true,
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be 0-65535, got "${values.port}"`);

  // Stdout carries READY (and the demo's report); everything the handlers log goes to stderr.
  const stdout = (line: string) => process.stdout.write(`${line}\n`);
  for (const method of ['log', 'info', 'debug', 'warn'] as const) console[method] = console.error;

  const { startLocal } = await import('../local/runtime');
  const stack = await startLocal({
    ...(values.config ? { configPath: values.config } : {}),
    port,
    ...(values.persist ? { persistDir: values.persist } : {}),
    ...(values['log-level'] ? { logLevel: values['log-level'].toUpperCase() } : {}),
  });
  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    await stack.stop();
  };
  process.once('SIGINT', () => void shutdown().then(() => process.exit(130)));
  process.once('SIGTERM', () => void shutdown().then(() => process.exit(143)));

  stdout(`READY ${JSON.stringify(stack.ready)}`);
  if (values.demo && !values['no-demo']) {
    const { runDemo } = await import('../local/demo');
    const ok = await runDemo(stack, stdout);
    await shutdown();
    return ok ? 0 : 1;
  }
  await new Promise(() => undefined); // until a signal
  return 0;
}

async function subjects(args: string[]): Promise<number> {
  const [action, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: {
      id: { type: 'string' },
      plan: { type: 'string' },
      anchor: { type: 'string' },
      'time-zone': { type: 'string' },
      contact: { type: 'string', multiple: true },
      name: { type: 'string' },
      endpoint: { type: 'string' },
      config: { type: 'string' },
    },
    strict: true,
  });
  if (values.endpoint) {
    process.env.AWS_ENDPOINT_URL_DYNAMODB = values.endpoint;
    process.env.AWS_REGION ??= 'us-east-1';
    process.env.AWS_ACCESS_KEY_ID ??= 'local';
    process.env.AWS_SECRET_ACCESS_KEY ??= 'local';
    process.env.SUBJECTS_TABLE ??= 'usage-pipeline-subjects';
  }
  const { appContext, loadConfigFile } = await import('../functions/adapters/app-context');
  const store = appContext.subjects();
  if (action === 'list') {
    for (const s of await store.list()) process.stdout.write(`${JSON.stringify(s)}\n`);
    return 0;
  }
  if (action !== 'put') throw new UsageError(`unknown subjects action "${action ?? ''}"`);
  const parsed = subjectSchema.safeParse({
    id: values.id,
    plan: values.plan,
    billingAnchorDay: values.anchor === undefined ? undefined : Number(values.anchor),
    ...(values['time-zone'] ? { timeZone: values['time-zone'] } : {}),
    contacts: values.contact ?? [],
    ...(values.name ? { name: values.name } : {}),
  });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UsageError(`${formatPath(issue?.path ?? []) || 'subject'}: ${issue?.message ?? 'invalid'}`);
  }
  if (values.config) {
    const config = loadConfigFile(values.config);
    if (!config.plans.some((p) => p.id === parsed.data.plan)) throw new UsageError(`plan: unknown plan "${parsed.data.plan}"`);
  }
  await store.put(parsed.data);
  process.stdout.write(`${JSON.stringify(parsed.data)}\n`);
  return 0;
}

class UsageError extends Error {}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UsageError || error instanceof ConfigError || (error instanceof Error && error.name === 'JavaMissingError')) {
      process.stderr.write(`usage-pipeline: ${error.message}\n`);
      return process.exit(2);
    }
    if (error instanceof TypeError && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`usage-pipeline: ${error.message}\n\n${USAGE}`);
      return process.exit(2);
    }
    process.stderr.write(`usage-pipeline: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
