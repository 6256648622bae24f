import { parseArgs } from 'node:util';
import { z } from 'zod';
import { ConfigError, formatPath, subjectSchema } from '../functions/core/config';
import { DomainError } from '../functions/core/errors';

/** `usage-pipeline <command>`: the local runtime and the operator's commands. */

const USAGE = `usage: usage-pipeline <command> [options]

  local [--config FILE] [--port N] [--persist DIR] [--demo | --no-demo] [--log-level LEVEL] [--clock-start ISO]
      Run the whole pipeline on this machine. Prints one line, READY {...}, on stdout when ready,
      and runs until Ctrl-C. With --demo it sends a generated stream, prints the totals and exits.
      --clock-start starts the local clock at an instant (e.g. 2028-02-29T23:30:00Z); from there it
      runs at the wall clock's pace, and POST /v1/test-clock still moves it forward.

  subjects put --id ID --plan PLAN --anchor DAY [--time-zone TZ] [--contact EMAIL]... [--name NAME]
  subjects list
  subjects index
      Add or change a workspace, or list them, in the table named by SUBJECTS_TABLE. A plan change
      takes effect at once; the anchor day and time zone of an existing workspace are fixed. "index" puts
      every workspace written before the closes' due index existed into it, due at the next hourly run
      (once, after deploying over such a version).

  grants add --subject ID --id GRANT_ID --kind bonus|topup --usage-type TYPE --amount N [--expires-at ISO]
  grants list --subject ID
      Grant bonus or top-up credits (idempotent by GRANT_ID), or list a workspace's grants, in the
      table named by ACCOUNTS_TABLE.

  keys create --scope workspace|finance|admin [--subject ID] [--name NAME]
  keys list
  keys revoke --id KEY_ID
      Create an API key (printed once; only its hash is stored), list keys (never the key), or revoke
      one, in the table named by API_KEYS_TABLE. A workspace key needs --subject.

  openapi
      Print the OpenAPI 3.1 document of the HTTP API (npm run openapi writes it to openapi.json).

  audit [--subject ID] [--cycle current|previous|YYYY-MM-DD] [--json]
      Recompute every cycle's totals from the ledger and compare them with the cycle and day rollups,
      the closed cycles' snapshots and late changes, and the cycle reports written at close. Prints a
      table; exits 1 on any difference. Reads the tables named by LEDGER_TABLE, ROLLUPS_TABLE,
      SUBJECTS_TABLE and ACCOUNTS_TABLE and the bucket named by REPORTS_BUCKET.

  replay --from dlq|quarantine|parked [--reason REASON] [--subject ID] [--dry-run] [--json]
      Send messages back to the usage queue once what made them fail is fixed. From the dead-letter
      queue (USAGE_DLQ_URL): every message, each deleted only after the usage queue (USAGE_QUEUE_URL)
      took it. From the quarantine (QUARANTINE_TABLE): the entries whose event passes validation now
      (config, SUBJECTS_TABLE, the clock), each removed once sent; the rest stay, listed with the reason
      they still fail for. From the parked ledger records (ROLLUPS_TABLE): each record DynamoDB refused on
      its own is applied to the rollups and removed in one transaction; one still refused stays parked.
      --reason (quarantine only) and --subject select entries; --dry-run lists what
      would be sent and changes nothing. Replaying twice counts every event once. Prints the counts of
      replayed, skipped and failed entries and one line per entry (--json: one JSON object); exits 1
      if any failed. Progress goes to stderr.

  repair --subject ID [--cycle current|previous|YYYY-MM-DD] [--dry-run] [--json]
      Restore a workspace's rollups from the ledger, the source of truth, while events keep flowing: its
      day, cycle, user and group items are made to hold exactly the ledger's events that the aggregator
      has applied (those still in flight on the stream are left to it), and parked records of the cycle are
      applied and removed. A closed cycle's change is a late adjustment, listed in its report under the
      source usage-pipeline/repair. Every cycle inside the ledger's retention when --cycle is absent.
      Running it again changes nothing. --dry-run lists what would change. Prints one line per item
      changed (--json: one JSON object). Reads LEDGER_TABLE and its stream, writes ROLLUPS_TABLE; its lease and
      the closed cycles' snapshots are in ACCOUNTS_TABLE.

  report-schema
      Print the JSON Schema of cycle reports, summaries and exports (npm run report-schema writes it to
      schemas/usage-report.schema.json).

  subjects, grants, keys, audit, replay and repair take --endpoint URL for DynamoDB Local (and its streams), --config FILE (default config/example.json)
  for plans and usage types, and --now ISO to act as of that instant instead of the system clock (for a local stack
  whose clock was started elsewhere with --clock-start or moved by the test clock); audit takes --s3-endpoint URL for the local S3 stand-in (READY's s3.endpoint);
  replay takes --sqs-endpoint URL for the local SQS stand-in (READY's sqs.endpoint).
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'local':
      return local(rest);
    case 'subjects':
      return subjects(rest);
    case 'grants':
      return grants(rest);
    case 'keys':
      return keys(rest);
    case 'audit':
      return audit(rest);
    case 'replay':
      return replay(rest);
    case 'repair':
      return repair(rest);
    case 'openapi': {
      const { DEPLOYED_ROUTES } = await import('../functions/contract/routes');
      const { buildOpenApi } = await import('../functions/contract/openapi');
      process.stdout.write(`${JSON.stringify(buildOpenApi(DEPLOYED_ROUTES), null, 2)}\n`);
      return 0;
    }
    case 'report-schema': {
      const { reportJsonSchema } = await import('../functions/core/reporting/report-schema');
      process.stdout.write(`${JSON.stringify(reportJsonSchema(), null, 2)}\n`);
      return 0;
    }
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
      'clock-start': { type: 'string' },
    },
    strict: true,
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be 0-65535, got "${values.port}"`);
  const clockStart = values['clock-start'] === undefined ? undefined : parseInstant('--clock-start', values['clock-start']);

  // Stdout carries READY (and the demo's report); everything the handlers log goes to stderr.
  const stdout = (line: string) => process.stdout.write(`${line}\n`);
  for (const method of ['log', 'info', 'debug', 'warn'] as const) console[method] = console.error;

  const { startLocal } = await import('../local/runtime');
  const stack = await startLocal({
    ...(values.config ? { configPath: values.config } : {}),
    port,
    ...(values.persist ? { persistDir: values.persist } : {}),
    ...(values['log-level'] ? { logLevel: values['log-level'].toUpperCase() } : {}),
    ...(clockStart ? { clockStart } : {}),
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

const ADMIN_OPTIONS = { endpoint: { type: 'string' }, config: { type: 'string', default: 'config/example.json' }, now: { type: 'string' } } as const;

/**
 * Points the SDK at DynamoDB Local when --endpoint is given (tables named as the local runtime names them), then builds what the admin commands need.
 * --now sets the commands' clock, running from that instant, to match a local stack whose clock was pinned or moved.
 */
async function adminContext(values: { endpoint?: string; config: string; now?: string }) {
  const now = values.now === undefined ? undefined : parseInstant('--now', values.now);
  if (values.endpoint) {
    const { TABLES } = await import('../functions/contract/resources');
    const { localTableName } = await import('../local/bootstrap');
    process.env.AWS_ENDPOINT_URL_DYNAMODB = values.endpoint;
    process.env.AWS_REGION ??= 'us-east-1';
    process.env.AWS_ACCESS_KEY_ID ??= 'local';
    process.env.AWS_SECRET_ACCESS_KEY ??= 'local';
    for (const definition of Object.values(TABLES)) process.env[definition.envVar] ??= localTableName(definition);
  }
  const { appContext, loadConfigFile, useClock } = await import('../functions/adapters/app-context');
  if (now) useClock(new (await import('../local/clock')).LocalClock(now));
  return {
    config: loadConfigFile(values.config),
    subjects: appContext.subjects(),
    accounts: appContext.accounts(),
    clock: appContext.clock(),
    // Built on first use: only the keys commands need API_KEYS_TABLE.
    keys: () => appContext.apiKeys(),
  };
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
      ...ADMIN_OPTIONS,
    },
    strict: true,
  });
  const deps = await adminContext(values);
  if (action === 'list') {
    for (const s of await deps.subjects.list()) process.stdout.write(`${JSON.stringify(s)}\n`);
    return 0;
  }
  if (action === 'index') {
    process.stdout.write(`${JSON.stringify({ indexed: await deps.subjects.indexMissing() })}\n`);
    return 0;
  }
  if (action !== 'put') throw new UsageError(`unknown subjects action "${action ?? ''}"`);
  const { id, ...body } = parseOptions(subjectSchema, 'subject', {
    id: values.id,
    plan: values.plan,
    billingAnchorDay: values.anchor === undefined ? undefined : Number(values.anchor),
    ...(values['time-zone'] ? { timeZone: values['time-zone'] } : {}),
    contacts: values.contact ?? [],
    ...(values.name ? { name: values.name } : {}),
  });
  const { putWorkspace } = await import('../functions/core/access/workspaces');
  const { workspace } = await putWorkspace(id, body, deps).catch(asUsageError);
  process.stdout.write(`${JSON.stringify(workspace)}\n`);
  return 0;
}

async function grants(args: string[]): Promise<number> {
  const [action, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: {
      subject: { type: 'string' },
      id: { type: 'string' },
      kind: { type: 'string' },
      'usage-type': { type: 'string' },
      amount: { type: 'string' },
      'expires-at': { type: 'string' },
      ...ADMIN_OPTIONS,
    },
    strict: true,
  });
  if (!values.subject) throw new UsageError('--subject is required');
  const deps = await adminContext(values);
  if (action === 'list') {
    for (const g of await deps.accounts.listGrants(values.subject)) process.stdout.write(`${JSON.stringify(g)}\n`);
    return 0;
  }
  if (action !== 'add') throw new UsageError(`unknown grants action "${action ?? ''}"`);
  const { addGrant, grantBodySchema } = await import('../functions/core/access/workspaces');
  const body = parseOptions(grantBodySchema, 'grant', {
    id: values.id,
    kind: values.kind,
    usageType: values['usage-type'],
    amount: values.amount === undefined ? undefined : Number(values.amount),
    ...(values['expires-at'] ? { expiresAt: values['expires-at'] } : {}),
  });
  const { created, grant } = await addGrant(values.subject, body, deps).catch(asUsageError);
  process.stdout.write(`${JSON.stringify({ created, grant })}\n`);
  return 0;
}

async function keys(args: string[]): Promise<number> {
  const [action, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: { scope: { type: 'string' }, subject: { type: 'string' }, name: { type: 'string' }, id: { type: 'string' }, ...ADMIN_OPTIONS },
    strict: true,
  });
  const deps = await adminContext(values);
  const { createKey, keyBodySchema, listKeys, revokeKey } = await import('../functions/core/access/api-keys');
  if (action === 'list') {
    for (const key of await listKeys({ keys: deps.keys() })) process.stdout.write(`${JSON.stringify(key)}\n`);
    return 0;
  }
  if (action === 'revoke') {
    if (!values.id) throw new UsageError('--id is required');
    process.stdout.write(`${JSON.stringify(await revokeKey(values.id, { keys: deps.keys(), clock: deps.clock }).catch(asUsageError))}\n`);
    return 0;
  }
  if (action !== 'create') throw new UsageError(`unknown keys action "${action ?? ''}"`);
  const body = parseOptions(keyBodySchema, 'key', {
    scope: values.scope,
    ...(values.subject ? { subject: values.subject } : {}),
    ...(values.name ? { name: values.name } : {}),
  });
  const created = await createKey(body, { keys: deps.keys(), subjects: deps.subjects, clock: deps.clock }).catch(asUsageError);
  process.stdout.write(`${JSON.stringify(created)}\n`);
  process.stderr.write('Store the key now: it is shown only this once.\n');
  return 0;
}

async function audit(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { subject: { type: 'string' }, cycle: { type: 'string' }, json: { type: 'boolean', default: false }, 's3-endpoint': { type: 'string' }, ...ADMIN_OPTIONS },
    strict: true,
  });
  if (values['s3-endpoint']) {
    const { BUCKETS } = await import('../functions/contract/resources');
    const { localBucketName } = await import('../local/bootstrap');
    process.env.AWS_ENDPOINT_URL_S3 = values['s3-endpoint'];
    process.env[BUCKETS.reports.envVar] ??= localBucketName;
  }
  const deps = await adminContext(values);
  const { reportQuerySchema, resolveCycle } = await import('../functions/core/reporting/analytics');
  const cycle = values.cycle === undefined ? undefined : parseOptions(reportQuerySchema, 'cycle', { cycle: values.cycle }).cycle;
  const { appContext } = await import('../functions/adapters/app-context');
  const { reportTable, runAudit } = await import('../functions/core/reporting/audit');
  const now = deps.clock.now();
  const result = await runAudit(
    { ...(values.subject ? { subject: values.subject } : {}), ...(cycle ? { cycle: (subject) => resolveCycle(cycle, subject, now) } : {}) },
    { config: deps.config, subjects: deps.subjects, ledger: appContext.ledgerScanner(), rollups: appContext.rollups(), accounts: deps.accounts, reports: appContext.reports() },
  ).catch((error: unknown) => {
    if (error instanceof Error && error.message.startsWith('unknown workspace')) throw new UsageError(error.message);
    throw error;
  });
  process.stdout.write(values.json ? `${JSON.stringify(result)}\n` : `${reportTable(result)}\n`);
  return result.differences === 0 ? 0 : 1;
}

async function replay(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      from: { type: 'string' },
      reason: { type: 'string' },
      subject: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      'sqs-endpoint': { type: 'string' },
      ...ADMIN_OPTIONS,
    },
    strict: true,
  });
  const { REJECTION_REASONS } = await import('../functions/core/metering/envelope');
  if (values.from !== 'dlq' && values.from !== 'quarantine' && values.from !== 'parked') throw new UsageError(`--from must be dlq, quarantine or parked, got "${values.from ?? ''}"`);
  if (values.reason !== undefined && values.from !== 'quarantine') throw new UsageError('--reason selects quarantine entries; dead-letter messages and parked records have no reason to select by');
  const reason = values.reason === undefined ? undefined : REJECTION_REASONS.find((r) => r === values.reason);
  if (values.reason !== undefined && !reason) throw new UsageError(`--reason must be one of ${REJECTION_REASONS.join(', ')}; got "${values.reason}"`);
  if (values.subject !== undefined && (values.subject.length === 0 || values.subject.length > 128)) throw new UsageError('--subject must be 1-128 characters');

  const { QUEUES } = await import('../functions/contract/resources');
  if (values['sqs-endpoint']) {
    const { GetQueueUrlCommand, SQSClient } = await import('@aws-sdk/client-sqs');
    const { localQueueName } = await import('../local/bootstrap');
    process.env.AWS_ENDPOINT_URL_SQS = values['sqs-endpoint'];
    process.env.AWS_REGION ??= 'us-east-1';
    process.env.AWS_ACCESS_KEY_ID ??= 'local';
    process.env.AWS_SECRET_ACCESS_KEY ??= 'local';
    const sqs = new SQSClient({});
    for (const definition of [QUEUES.usageEvents, QUEUES.deadLetter]) {
      process.env[definition.envVar] ??= (await sqs.send(new GetQueueUrlCommand({ QueueName: localQueueName(definition) }))).QueueUrl;
    }
    sqs.destroy();
  }
  const deps = await adminContext(values);
  const { appContext } = await import('../functions/adapters/app-context');
  const { requireEnv } = await import('../functions/adapters/dynamodb');
  const { SqsUsageQueue, createSqsClient } = await import('../functions/adapters/usage-queue');
  const { replayDeadLetters, replayParked, replayQuarantine, replayTable } = await import('../functions/core/metering/replay');
  const { progressBar } = await import('../local/progress');
  const sqs = createSqsClient();
  // Parked records go back to the rollups, not the queue.
  const queue = () => new SqsUsageQueue(sqs, requireEnv(QUEUES.usageEvents.envVar));
  let bar: ReturnType<typeof progressBar> | undefined;
  const options = {
    dryRun: values['dry-run'],
    onProgress: (done: number, total: number) => {
      bar ??= progressBar(`replay ${values.from}`, total);
      bar.tick(done);
    },
  };
  const subject = values.subject === undefined ? {} : { subject: values.subject };
  let result;
  if (values.from === 'parked') {
    const { breakdownPolicy } = await import('../functions/core/metering/rollups');
    const rollups = appContext.rollups();
    result = await replayParked(subject, options, { parked: rollups, rollups, breakdowns: breakdownPolicy(deps.config.rateCard) });
  } else if (values.from === 'dlq') {
    const { SqsDeadLetterQueue } = await import('../functions/adapters/dead-letter-queue');
    result = await replayDeadLetters(subject, options, { dlq: new SqsDeadLetterQueue(sqs, requireEnv(QUEUES.deadLetter.envVar)), queue: queue() });
  } else {
    result = await replayQuarantine({ ...subject, ...(reason ? { reason } : {}) }, options, {
      quarantine: appContext.quarantine(),
      queue: queue(),
      config: deps.config,
      subjects: deps.subjects,
      clock: deps.clock,
    });
  }
  bar?.end();
  sqs.destroy();
  process.stdout.write(values.json ? `${JSON.stringify(result)}\n` : `${replayTable(result)}\n`);
  return result.failed === 0 ? 0 : 1;
}

async function repair(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { subject: { type: 'string' }, cycle: { type: 'string' }, 'dry-run': { type: 'boolean', default: false }, json: { type: 'boolean', default: false }, ...ADMIN_OPTIONS },
    strict: true,
  });
  if (values.subject === undefined || values.subject.length === 0) throw new UsageError('--subject is required');
  if (values.endpoint) process.env.AWS_ENDPOINT_URL_DYNAMODB_STREAMS ??= values.endpoint;
  const deps = await adminContext(values);
  const { reportQuerySchema, resolveCycle } = await import('../functions/core/reporting/analytics');
  const cycle = values.cycle === undefined ? undefined : parseOptions(reportQuerySchema, 'cycle', { cycle: values.cycle }).cycle;
  const { DynamoDBClient } = await import('@aws-sdk/client-dynamodb');
  const { DynamoDBStreamsClient } = await import('@aws-sdk/client-dynamodb-streams');
  const { appContext } = await import('../functions/adapters/app-context');
  const { requireEnv } = await import('../functions/adapters/dynamodb');
  const { DynamoLedgerStream } = await import('../functions/adapters/ledger-stream');
  const { TABLES } = await import('../functions/contract/resources');
  const { breakdownPolicy } = await import('../functions/core/metering/rollups');
  const { RepairRefusedError, repairSubject, repairTable } = await import('../functions/core/metering/repair');
  const now = deps.clock.now();
  const streams = new DynamoDBStreamsClient({ maxAttempts: 8 });
  const dynamodb = new DynamoDBClient({ maxAttempts: 8 });
  try {
    const result = await repairSubject(
      { subject: values.subject, dryRun: values['dry-run'], ...(cycle ? { cycle: (subject) => resolveCycle(cycle, subject, now) } : {}) },
      {
        config: deps.config,
        clock: deps.clock,
        subjects: deps.subjects,
        snapshots: deps.accounts,
        ledger: appContext.ledgerScanner(),
        stream: new DynamoLedgerStream(streams, dynamodb, requireEnv(TABLES.ledger.envVar)),
        rollups: appContext.rollups(),
        leases: appContext.leases(),
        breakdowns: breakdownPolicy(deps.config.rateCard),
      },
    ).catch((error: unknown) => {
      if (error instanceof RepairRefusedError) throw new UsageError(error.message);
      throw error;
    });
    process.stdout.write(values.json ? `${JSON.stringify(result)}\n` : `${repairTable(result)}\n`);
    return 0;
  } finally {
    streams.destroy();
    dynamodb.destroy();
  }
}

/** Validates command-line options against the schema the API uses; the first problem names its option. */
function parseOptions<S extends z.ZodType>(schema: S, what: string, raw: unknown): z.infer<S> {
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new UsageError(`${formatPath(issue?.path ?? []) || what}: ${issue?.message ?? 'invalid'}`);
}

/** A domain error (unknown plan, unknown workspace, …) is the operator's input at fault: exit 2 with its message. */
function asUsageError(error: unknown): never {
  if (error instanceof DomainError) throw new UsageError(`${error.code}: ${error.message}`);
  throw error;
}

class UsageError extends Error {}

const isoInstant = z.iso.datetime({ offset: true });

/** An ISO 8601 instant with its offset (`Z` or ±hh:mm), as every time at the API's boundary. */
function parseInstant(flag: string, value: string): Date {
  if (!isoInstant.safeParse(value).success) throw new UsageError(`${flag} must be an ISO 8601 instant such as 2028-02-29T23:30:00Z, got "${value}"`);
  return new Date(value);
}

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
