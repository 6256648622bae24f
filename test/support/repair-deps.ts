import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { DynamoDBStreamsClient } from '@aws-sdk/client-dynamodb-streams';
import { appContext } from '../../functions/adapters/app-context';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import { DynamoLeases } from '../../functions/adapters/lease-store';
import { DynamoLedgerScanner } from '../../functions/adapters/ledger-store';
import { DynamoLedgerStream } from '../../functions/adapters/ledger-stream';
import type { RepairDeps } from '../../functions/core/metering/repair';
import { DEFAULT_BREAKDOWNS } from '../../functions/core/metering/rollups';
import type { LocalStack } from '../../local/runtime';

/** What `usage-pipeline repair` runs with, against a local stack's tables and stream. */
export function localRepairDeps(stack: LocalStack, raw: DynamoDBClient, streams: DynamoDBStreamsClient, rollups: RepairDeps['rollups']): RepairDeps {
  return {
    config: stack.config,
    clock: stack.clock,
    subjects: appContext.subjects(),
    snapshots: appContext.accounts(),
    ledger: new DynamoLedgerScanner(raw, stack.tables.ledger),
    stream: new DynamoLedgerStream(streams, raw, stack.tables.ledger),
    rollups,
    leases: new DynamoLeases(createDocumentClient(raw), stack.tables.accounts),
    breakdowns: DEFAULT_BREAKDOWNS,
    streamLagMs: 100,
  };
}
