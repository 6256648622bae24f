import { type AttributeValue, BatchGetItemCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { MiddlewareStack } from '@smithy/types';
import { itemSize, transactionalWriteUnits } from '../micro/item-size';
import type { TableUse, TransactionUnits } from './pipeline-protocol';

const WRITES = new Set(['PutItemCommand', 'UpdateItemCommand', 'DeleteItemCommand', 'BatchWriteItemCommand']);
const READS = new Set(['GetItemCommand', 'BatchGetItemCommand', 'QueryCommand', 'ScanCommand', 'TransactGetItemsCommand']);
const TRANSACT_WRITE = 'TransactWriteItemsCommand';

interface Consumed {
  TableName?: string;
  CapacityUnits?: number;
}

/**
 * DynamoDB use of a contender, per phase, from SDK middleware on its client: every data request asks
 * for ReturnConsumedCapacity, standard writes and reads are counted as reported (DynamoDB Local sizes
 * those correctly), a refused conditional write as one unit, as AWS bills it for an item under 1 KB.
 * DynamoDB Local's figure for TransactWriteItems does not follow item sizes, so transactions are
 * recorded by the items they wrote and priced after the run, from the items' final sizes.
 */
export class DynamoMeter {
  private phase = 'setup';
  private readonly use = new Map<string, Map<string, TableUse>>();
  private readonly transactions: { phase: string; items: string[]; puts: number; putUnits: number; cancelled: boolean }[] = [];
  /** Every item a transaction wrote, by `itemId`. */
  private readonly items = new Map<string, { table: string; key: Record<string, AttributeValue> }>();

  startPhase(name: string): void {
    this.phase = name;
  }

  attach<Input extends object, Output extends object>(stack: MiddlewareStack<Input, Output>): void {
    // Before serialization, so that the flag is sent; a document client's input is still unmarshalled here.
    stack.add(
      (next, context) => async (args) => {
        const command = String(context.commandName);
        if (WRITES.has(command) || READS.has(command) || command === TRANSACT_WRITE) Object.assign(args.input, { ReturnConsumedCapacity: 'TOTAL' });
        return next(args);
      },
      { step: 'initialize', name: 'benchConsumedCapacity' },
    );
    // After serialization: the input is in AttributeValue form whichever client sent it.
    stack.add(
      (next, context) => async (args) => {
        const command = String(context.commandName);
        const input = args.input as Record<string, unknown>;
        try {
          const result = await next(args);
          this.record(command, input, (result.output as { ConsumedCapacity?: Consumed | Consumed[] }).ConsumedCapacity, 'done');
          return result;
        } catch (error) {
          const name = (error as Error).name;
          if (name === 'ConditionalCheckFailedException') this.record(command, input, undefined, 'refused');
          if (name === 'TransactionCanceledException') this.record(command, input, undefined, 'cancelled');
          throw error;
        }
      },
      { step: 'build', name: 'benchMeter' },
    );
  }

  private record(command: string, input: Record<string, unknown>, consumed: Consumed | Consumed[] | undefined, outcome: 'done' | 'refused' | 'cancelled'): void {
    if (command === TRANSACT_WRITE) {
      // Updates name their item by Key and are priced by its size after the run; a Put (a lane item, rewritten whole
      // and shrinking when its deltas fold) carries its item, priced as sent.
      const items: string[] = [];
      let putUnits = 0;
      let puts = 0;
      for (const entry of input.TransactItems as Record<string, { TableName: string; Key?: Record<string, AttributeValue>; Item?: Record<string, AttributeValue> }>[]) {
        const { TableName: table, Key: key, Item: item } = Object.values(entry)[0] ?? { TableName: '?' };
        if (item) {
          putUnits += transactionalWriteUnits(itemSize(item));
          puts += 1;
          continue;
        }
        const id = itemId(table, key ?? {});
        this.items.set(id, { table, key: key ?? {} });
        items.push(id);
      }
      this.transactions.push({ phase: this.phase, items, puts, putUnits, cancelled: outcome === 'cancelled' });
      return;
    }
    const write = WRITES.has(command);
    if (!write && !READS.has(command)) return;
    const table = String(input.TableName ?? Object.keys((input.RequestItems as object | undefined) ?? {})[0] ?? '?');
    const use = this.tableUse(this.phase, table);
    if (write) use.writeRequests += 1;
    else use.readRequests += 1;
    if (outcome === 'refused') {
      use.conditionalFailures += 1;
      use.writeUnits += 1;
      return;
    }
    for (const c of [consumed ?? []].flat()) {
      const of = this.tableUse(this.phase, c.TableName ?? table);
      if (write) of.writeUnits += c.CapacityUnits ?? 0;
      else of.readUnits += c.CapacityUnits ?? 0;
    }
  }

  private tableUse(phase: string, table: string): TableUse {
    let tables = this.use.get(phase);
    if (!tables) this.use.set(phase, (tables = new Map()));
    let use = tables.get(table);
    if (!use) tables.set(table, (use = { writeUnits: 0, writeRequests: 0, readUnits: 0, readRequests: 0, conditionalFailures: 0 }));
    return use;
  }

  tables(phase: string): Record<string, TableUse> {
    return Object.fromEntries(this.use.get(phase) ?? []);
  }

  /** A phase's standard writes over every table: requests and units as reported (transactions apart, `transactionUnits`). */
  plainWrites(phase: string): { requests: number; units: number } {
    return Object.values(this.tables(phase)).reduce((sum, use) => ({ requests: sum.requests + use.writeRequests, units: sum.units + use.writeUnits }), { requests: 0, units: 0 });
  }

  /** Reads back every item a transaction wrote and prices each phase's transactions from their sizes. */
  async transactionUnits(client: DynamoDBClient): Promise<Map<string, TransactionUnits>> {
    const sizes = await this.readSizes(client);
    const byPhase = new Map<string, TransactionUnits>();
    for (const { phase, items, puts, putUnits, cancelled } of this.transactions) {
      const units = byPhase.get(phase) ?? { transactions: 0, cancelled: 0, items: 0, sizedUnits: 0, minimumUnits: 0 };
      units.transactions += 1;
      units.cancelled += cancelled ? 1 : 0;
      units.items += items.length + puts;
      units.minimumUnits += 2 * items.length + putUnits;
      units.sizedUnits += items.reduce((sum, id) => sum + transactionalWriteUnits(sizes.get(id) ?? 0), 0) + putUnits;
      byPhase.set(phase, units);
    }
    return byPhase;
  }

  private async readSizes(client: DynamoDBClient): Promise<Map<string, number>> {
    const sizes = new Map<string, number>();
    const all = [...this.items.values()];
    for (let i = 0; i < all.length; i += 100) {
      const chunk = all.slice(i, i + 100);
      const keyNames = new Map(chunk.map(({ table, key }) => [table, Object.keys(key)]));
      let request: Record<string, { Keys: Record<string, AttributeValue>[] }> | undefined = {};
      for (const { table, key } of chunk) (request[table] ??= { Keys: [] }).Keys.push(key);
      while (request && Object.keys(request).length > 0) {
        const response = await client.send(new BatchGetItemCommand({ RequestItems: request }));
        for (const [table, items] of Object.entries(response.Responses ?? {})) {
          const names = keyNames.get(table) ?? [];
          for (const item of items) sizes.set(itemId(table, Object.fromEntries(names.map((n) => [n, item[n] as AttributeValue]))), itemSize(item));
        }
        request = response.UnprocessedKeys as typeof request;
      }
    }
    return sizes;
  }
}

const itemId = (table: string, key: Record<string, AttributeValue>) => `${table}\u0000${JSON.stringify(key)}`;
