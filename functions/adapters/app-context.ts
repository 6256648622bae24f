import { readFileSync } from 'node:fs';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { BUCKETS, CONFIG_FILE_ENV, EMAIL_ENV, QUEUES, TABLES } from '../contract/resources';
import type { SubjectClose } from '../core/billing/closes';
import { type Config, parseConfig } from '../core/config';
import type { Clock } from '../core/ports';
import { DynamoAccounts } from './account-store';
import { DynamoActivity } from './activity-store';
import { DynamoAlerts } from './alert-store';
import { DynamoApiKeys } from './api-key-store';
import { SqsCloseQueue } from './close-queue';
import { createDocumentClient, requireEnv } from './dynamodb';
import { DynamoExports } from './export-store';
import { DynamoLeases } from './lease-store';
import { createLedgerClient, DynamoLedger, DynamoLedgerScanner } from './ledger-store';
import { DynamoQuarantine } from './quarantine-store';
import { DynamoRollups } from './rollup-store';
import { createS3Client, S3FileWriter, S3Reports } from './s3';
import { withoutSdkLogging } from './sdk-clients';
import { createSesClient, SesEmailSender } from './ses-sender';
import { DynamoSubjects } from './subject-store';
import { createSqsClient, SqsUsageQueue } from './usage-queue';

/**
 * Everything handlers depend on, built once per process on first use from the environment.
 * Each piece is built lazily, so a function only needs the variables of what it touches.
 */

function once<T>(build: () => T): () => T {
  let value: T | undefined;
  let built = false;
  return () => {
    if (!built) {
      value = build();
      built = true;
    }
    return value as T;
  };
}

export function loadConfigFile(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new Error(`cannot read configuration file ${path}: ${(error as Error).message}`, { cause: error });
  }
  return parseConfig(text, path);
}

const dynamoClient = once(() => withoutSdkLogging(new DynamoDBClient({ maxAttempts: 8 })));
const documentClient = once(() => createDocumentClient(dynamoClient()));
/** Middleware (the fault driver's, the bench meter's) must be added to it before its first request: it caches its stack. */
const ledgerClient = once(() => createLedgerClient());
const s3Client = once(() => createS3Client());
const sesClient = once(() => createSesClient());

/** The SDK clients the handlers share, one of each per process; fault-injection tests add middleware to their stacks. */
export const awsClients = { dynamodb: dynamoClient, ledger: ledgerClient, ses: sesClient, s3: s3Client };

let clock: Clock = { now: () => new Date() };

export const appContext = {
  config: once(() => loadConfigFile(requireEnv(CONFIG_FILE_ENV))),
  ledger: once(() => new DynamoLedger(ledgerClient(), requireEnv(TABLES.ledger.envVar))),
  ledgerScanner: once(() => new DynamoLedgerScanner(dynamoClient(), requireEnv(TABLES.ledger.envVar))),
  rollups: once(() => new DynamoRollups(documentClient(), requireEnv(TABLES.rollups.envVar), { now: () => clock.now() }, process.env[TABLES.accounts.envVar])),
  /** Recent activity, beside the rollups in their table (best effort, never in their transactions). */
  activity: once(() => new DynamoActivity(documentClient(), requireEnv(TABLES.rollups.envVar))),
  subjects: once(() => new DynamoSubjects(documentClient(), requireEnv(TABLES.subjects.envVar))),
  quarantine: once(() => new DynamoQuarantine(documentClient(), requireEnv(TABLES.quarantine.envVar))),
  accounts: once(() => new DynamoAccounts(documentClient(), requireEnv(TABLES.accounts.envVar), { now: () => clock.now() })),
  /** Leases of jobs that must not overlap (the scheduler's closes), beside the accounts' items. */
  leases: once(() => new DynamoLeases(documentClient(), requireEnv(TABLES.accounts.envVar))),
  alerts: once(() => new DynamoAlerts(documentClient(), requireEnv(TABLES.alerts.envVar))),
  apiKeys: once(() => new DynamoApiKeys(documentClient(), requireEnv(TABLES.apiKeys.envVar))),
  email: once(() => new SesEmailSender(sesClient(), process.env[EMAIL_ENV.configurationSet] || undefined)),
  s3: s3Client,
  reportsBucket: once(() => requireEnv(BUCKETS.reports.envVar)),
  reports: once(() => new S3Reports(s3Client(), requireEnv(BUCKETS.reports.envVar))),
  exportFiles: once(() => new S3FileWriter(s3Client(), requireEnv(BUCKETS.reports.envVar))),
  exports: once(() => new DynamoExports(documentClient(), requireEnv(TABLES.exports.envVar))),
  usageQueue: once(() => new SqsUsageQueue(createSqsClient(), requireEnv(QUEUES.usageEvents.envVar))),
  closeQueue: once(() => new SqsCloseQueue(createSqsClient(), requireEnv(QUEUES.closes.envVar))),
  clock: () => clock,
  /** Only the local runtime has a test clock; in AWS its route answers 404. */
  testClock: (): TestClock | undefined => testClock,
};

/** A clock that only moves forward; a move runs every scheduled job that falls due, and the closes they start. */
export interface TestClock {
  /** Refuses a move backwards at once (clock_backwards); else queues it. `finished` settles as the move does. */
  advance(instant: Date): { move: TestClockMove; finished: Promise<unknown> };
  /** How long `POST /v1/test-clock` waits for its move before answering 202 with the move to poll. */
  readonly answerWithinMs: number;
  /** A move started lately, by id, as it stands. */
  move(id: string): TestClockMove | undefined;
  /** Told of every workspace closed, so that a move can answer with what its closes did. */
  closed(close: SubjectClose): void;
}

export interface TestClockMove {
  id: string;
  advanceTo: string;
  status: 'running' | 'done' | 'failed';
  result?: unknown;
  error?: { code: string; message: string };
}

let testClock: TestClock | undefined;

export function useTestClock(replacement: TestClock): void {
  testClock = replacement;
}

/** The local runtime replaces the wall clock with its own; in AWS it stays the system clock. */
export function useClock(replacement: Clock): void {
  clock = replacement;
}
