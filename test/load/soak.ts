/**
 * The fault-injection suite, long: seeded scenarios (testkit/faults) one after another, each in its own
 * process (the handlers keep one set of SDK clients per process), until at least --faults faults were
 * injected, with a progress bar. Every run checks every invariant; the first violation stops the soak with
 * the seed that reproduces it.
 *
 *   npm run soak -- [--seed 1] [--faults 20000] [--events 2000] [--stale-resends]
 *   npm run soak -- --external [--seed 1] [--events 1000]
 *
 * --external replays a scenario as a client of our own against `usage-pipeline local` (started here, as its
 * own process, with the scenario's config): messages over SQS in their rounds, the test clock over HTTP,
 * the results read back through the API, the SES store and the audit. No SDK fault can be injected into
 * another process, so that run has the producer's anomalies only: resends, corrections, reordering, bad input.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { moveTestClock } from '../../local/clock';
import { progressBar } from '../../local/progress';
import type { RunResult } from '../../testkit/faults/run';

const { values: options } = parseArgs({
  options: {
    seed: { type: 'string', default: '1' },
    faults: { type: 'string', default: '20000' },
    events: { type: 'string', default: '2000' },
    'stale-resends': { type: 'boolean', default: false },
    external: { type: 'boolean', default: false },
    child: { type: 'boolean', default: false },
  },
});
const RESULT = 'SOAK_RESULT ';

async function child(): Promise<void> {
  const { DEFAULT_RATES, quietEmptyMetricsWarnings, runFaultScenario } = await import('../../testkit/faults/run');
  quietEmptyMetricsWarnings();
  const result = await runFaultScenario({ seed: Number(options.seed), events: Number(options.events), rates: DEFAULT_RATES, scenario: { staleResends: options['stale-resends'] } });
  const { scenario: _scenario, ...rest } = result;
  process.stdout.write(`${RESULT}${JSON.stringify(rest)}\n`);
}

async function soak(): Promise<number> {
  const goal = Number(options.faults);
  const bar = progressBar('faults', goal);
  const byKind = new Map<string, number>();
  const byStep = new Map<string, number>();
  let total = 0;
  let checks = 0;
  let windows = 0;
  const seeds: number[] = [];
  for (let seed = Number(options.seed); total < goal; seed++) {
    const result = await runChild(seed);
    seeds.push(seed);
    total += result.faults.total;
    checks += result.checks.checks;
    windows += result.duplicateWindows;
    for (const [kind, n] of Object.entries(result.faults.byKind)) byKind.set(kind, (byKind.get(kind) ?? 0) + n);
    for (const [step, kinds] of Object.entries(result.faults.byStep)) byStep.set(step, (byStep.get(step) ?? 0) + Object.values(kinds).reduce((a, b) => a + b, 0));
    bar.tick(Math.min(total, goal));
    const broken = [...result.checks.violations, ...(result.rerunsChangedNothing ? [] : ['a close re-run changed the accounts table'])];
    if (broken.length > 0) {
      bar.end();
      console.log(
        `seed ${seed}: ${broken.length} violation(s); reproduce with: npm run soak -- --seed ${seed} --faults 1 --events ${options.events}${options['stale-resends'] ? ' --stale-resends' : ''}`,
      );
      for (const v of broken.slice(0, 40)) console.log(`  ${v}`);
      return 1;
    }
  }
  bar.end();
  console.log(
    `\n${total.toLocaleString('en-US')} faults injected and survived over seeds ${seeds[0]}–${seeds.at(-1)}; ${checks.toLocaleString('en-US')} checks, no violation; ${windows} send(s) in the README's duplicate window\n`,
  );
  console.log(
    table(
      ['kind', 'faults'],
      [...byKind].map(([k, n]) => [k, n.toLocaleString('en-US')]),
    ),
  );
  console.log(
    `\n${table(
      ['step', 'faults'],
      [...byStep].sort((a, b) => b[1] - a[1]).map(([k, n]) => [k, n.toLocaleString('en-US')]),
    )}`,
  );
  return 0;
}

function runChild(seed: number): Promise<Omit<RunResult, 'scenario'>> {
  return new Promise((resolve, reject) => {
    const args = ['tsx', 'test/load/soak.ts', '--child', '--seed', String(seed), '--events', String(options.events), ...(options['stale-resends'] ? ['--stale-resends'] : [])];
    const proc = spawn('npx', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let result: Omit<RunResult, 'scenario'> | undefined;
    createInterface({ input: proc.stdout }).on('line', (line) => {
      if (line.startsWith(RESULT)) result = JSON.parse(line.slice(RESULT.length)) as Omit<RunResult, 'scenario'>;
    });
    proc.on('exit', (code) => (result ? resolve(result) : reject(new Error(`seed ${seed}: the run exited with ${code} and no result`))));
  });
}

/** Replays one scenario against `usage-pipeline local` as an outside client, and checks the same invariants. */
async function external(): Promise<number> {
  const { makeScenario, Expected, ADMIN_KEY } = await import('../../testkit/faults/scenarios');
  const { checkInvariants } = await import('../../testkit/faults/invariants');
  const seed = Number(options.seed);
  const scenario = makeScenario(seed, Number(options.events));
  const configPath = join(mkdtempSync(join(tmpdir(), 'soak-')), 'config.json');
  writeFileSync(configPath, JSON.stringify(scenario.config));
  const local = spawn('node', ['bin/usage-pipeline.js', 'local', '--config', configPath, '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const ready = await new Promise<{ api: string; region: string; sqs: { endpoint: string; queueUrl: string }; dynamodb: { endpoint: string }; ses: { store: string }; s3: { endpoint: string } }>(
    (resolve, reject) => {
      createInterface({ input: local.stdout }).once('line', (line) => (line.startsWith('READY ') ? resolve(JSON.parse(line.slice(6))) : reject(new Error(line))));
      local.once('exit', (code) => reject(new Error(`usage-pipeline local exited with ${code}`)));
    },
  );
  try {
    // The runtime creates the workspaces as it starts, seconds after the scenario's clock: the same cycles.
    const shifted = scenario;
    const start = scenario.now;
    const sqs = new SQSClient({ region: ready.region, endpoint: ready.sqs.endpoint, credentials: { accessKeyId: 'soak', secretAccessKey: 'soak' } });
    const api = async (method: string, path: string, body?: unknown) => {
      const response = await fetch(`${ready.api}${path}`, {
        method,
        headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
      return response.json() as Promise<unknown>;
    };
    // SQS refuses a body over 256 KiB itself; such a message never reaches the pipeline.
    const sendable = (m: { body: string }) => Buffer.byteLength(m.body) <= 256 * 1024;
    for (const phase of shifted.phases) {
      for (const round of phase.rounds) {
        const messages = round.filter(sendable);
        for (let i = 0; i < messages.length; i += 10) {
          const { Failed } = await sqs.send(new SendMessageBatchCommand({ QueueUrl: ready.sqs.queueUrl, Entries: messages.slice(i, i + 10).map((m, j) => ({ Id: String(j), MessageBody: m.body })) }));
          if (Failed?.length) throw new Error(`SendMessageBatch: ${JSON.stringify(Failed)}`);
        }
        await new Promise((r) => setTimeout(r, 50)); // a later round is sent later
      }
      await moveTestClock(ready.api, ADMIN_KEY, new Date(phase.advanceTo).toISOString());
    }
    await moveTestClock(ready.api, ADMIN_KEY, new Date((shifted.phases.at(-1)?.advanceTo ?? start) + 86_400_000).toISOString());
    for (const phase of shifted.phases) for (const round of phase.rounds) for (let i = round.length - 1; i >= 0; i--) if (!sendable(round[i] as { body: string })) round.splice(i, 1);

    // Read back as an outside client: HTTP for rollups and quarantine, the stand-ins' endpoints for the rest.
    Object.assign(process.env, {
      AWS_REGION: ready.region,
      AWS_ACCESS_KEY_ID: 'soak',
      AWS_SECRET_ACCESS_KEY: 'soak',
      AWS_ENDPOINT_URL_DYNAMODB: ready.dynamodb.endpoint,
      AWS_ENDPOINT_URL_S3: ready.s3.endpoint,
      USAGE_CONFIG_FILE: configPath,
    });
    const { TABLES, BUCKETS } = await import('../../functions/contract/resources');
    const { localTableName, localBucketName } = await import('../../local/bootstrap');
    for (const definition of Object.values(TABLES)) process.env[definition.envVar] = localTableName(definition);
    process.env[BUCKETS.reports.envVar] = localBucketName;
    const { appContext } = await import('../../functions/adapters/app-context');
    const { createDocumentClient } = await import('../../functions/adapters/dynamodb');
    const { runAudit } = await import('../../functions/core/reporting/audit');
    const documents = createDocumentClient();
    const from = new Date(start - 60 * 86_400_000);
    const to = new Date(start + 90 * 86_400_000);
    const buckets = async (subject: string, granularity: 'hour' | 'day' | 'cycle') => {
      const out: { start: string; usageType: string; quantity: number }[] = [];
      const windowMs = granularity === 'hour' ? 90 * 86_400_000 : to.getTime() - from.getTime();
      for (let at = from.getTime(); at < to.getTime(); at += windowMs) {
        const page = (await api(
          'GET',
          `/v1/workspaces/${subject}/usage?granularity=${granularity}&from=${new Date(at).toISOString()}&to=${new Date(Math.min(at + windowMs, to.getTime())).toISOString()}`,
        )) as { buckets: typeof out };
        out.push(...page.buckets);
      }
      return out;
    };
    const report = await checkInvariants(
      new Expected(shifted, shifted.phases.length),
      { phases: shifted.phases.length, beforeClose: new Expected(shifted, 1), adjustmentsDue: true },
      {
        rollups: async (subject, kind) => {
          if (kind === 'cycle') return (await buckets(subject, 'cycle')).map((b) => ({ usageType: b.usageType, kind, period: b.start, total: String(b.quantity), counters: {} }));
          const hours = await buckets(subject, 'hour');
          return (await buckets(subject, 'day')).map((b) => ({
            usageType: b.usageType,
            kind,
            period: b.start.slice(0, 10),
            total: String(b.quantity),
            counters: Object.fromEntries(hours.filter((h) => h.usageType === b.usageType && h.start.startsWith(b.start.slice(0, 10))).map((h) => [`h#${h.start.slice(0, 13)}`, String(h.quantity)])),
          }));
        },
        quarantine: async () => ((await api('GET', '/v1/quarantine?limit=1000')) as { items: { reason: string; body: string }[] }).items.map((q) => `${q.reason} ${q.body}`),
        quarantineIdentity: (q) => `${q.reason} ${q.body}`,
        alerts: async (subject) => {
          const { Items = [] } = await documents.send(
            new QueryCommand({ TableName: localTableName(TABLES.alerts), KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': subject } }),
          );
          return Items.map((i) => ({ sk: String(i.sk), notify: i.notify === true }));
        },
        emails: async () => {
          const { emails } = (await (await fetch(ready.ses.store)).json()) as { emails: { destination: { to: string[] }; subject: string; body: { text?: string } }[] };
          return emails.map((e) => ({ to: e.destination.to.join(','), subject: e.subject, text: e.body.text ?? '' }));
        },
        snapshots: (subject) => appContext.accounts().listCycleSnapshots(subject),
        grants: (subject) => appContext.accounts().listGrants(subject),
        adjustments: (subject) => appContext.accounts().listAdjustments(subject),
        audit: () =>
          runAudit(
            {},
            {
              config: appContext.config(),
              subjects: appContext.subjects(),
              ledger: appContext.ledgerScanner(),
              rollups: appContext.rollups(),
              accounts: appContext.accounts(),
              reports: appContext.reports(),
            },
          ),
      },
      [],
    );
    sqs.destroy();
    console.log(`external replay of seed ${seed}: ${report.checks.toLocaleString('en-US')} checks, ${report.violations.length} violation(s)`);
    for (const v of report.violations.slice(0, 40)) console.log(`  ${v}`);
    return report.violations.length === 0 ? 0 : 1;
  } finally {
    local.kill('SIGINT');
  }
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

const run = options.child ? child().then(() => 0) : options.external ? external() : soak();
run.then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(2);
  },
);
