import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, type DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import type { LeaseStore } from '../core/lease';

/** Leases live beside the accounts' items under a key no workspace id can take (ids start with a letter or digit). */
const LEASE_PK = '_lease';
const leaseKey = (name: string) => ({ pk: LEASE_PK, sk: name });

/** A transaction item that holds only while `holder` still holds `name`: a write under a lease fences itself with it. */
export function leaseHeld(tableName: string, lease: { name: string; holder: string }) {
  return { ConditionCheck: { TableName: tableName, Key: leaseKey(lease.name), ConditionExpression: 'holder = :holder', ExpressionAttributeValues: { ':holder': lease.holder } } };
}

/** One item per lease: who holds it and until when (ISO 8601 UTC, so that strings compare as instants). */
export class DynamoLeases implements LeaseStore {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async acquire(name: string, holder: string, now: Date, expiresAt: Date): Promise<boolean> {
    try {
      await this.client.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { ...leaseKey(name), holder, acquiredAt: now.toISOString(), expiresAt: expiresAt.toISOString() },
          ConditionExpression: 'attribute_not_exists(pk) OR expiresAt <= :now OR holder = :holder',
          ExpressionAttributeValues: { ':now': now.toISOString(), ':holder': holder },
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  async release(name: string, holder: string): Promise<void> {
    try {
      await this.client.send(new DeleteCommand({ TableName: this.tableName, Key: leaseKey(name), ConditionExpression: 'holder = :holder', ExpressionAttributeValues: { ':holder': holder } }));
    } catch (error) {
      // Expired and taken by another run: it is theirs now.
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
    }
  }
}
