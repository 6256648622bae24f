import { AsyncLocalStorage } from 'node:async_hooks';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { MiddlewareStack } from '@smithy/types';

/**
 * Requests and capacity of the closes, by role (who sent them: a close, the scheduler, the sequential run), from
 * SDK middleware on the handlers' shared DynamoDB and S3 clients. Every DynamoDB data request asks for
 * ReturnConsumedCapacity (DynamoDB Local sizes standard reads and writes); a refused conditional write counts one
 * unit, as AWS bills it for a small item. A context (`run`) also counts round trips: a request started while no
 * other request of the same context is in flight waits for a reply before it, one started beside another does not.
 */

export type Service = 'dynamodb' | 's3';

export interface RoleUse {
  requests: Record<Service, number>;
  roundTrips: Record<Service, number>;
  /** DynamoDB commands and S3 operations by name. */
  commands: Record<string, number>;
  writeUnits: Record<string, number>;
  readUnits: Record<string, number>;
  conditionalFailures: number;
}

interface Context {
  role: string;
  inFlight: number;
}

const DYNAMO_DATA = /^(Get|Put|Update|Delete|BatchGet|BatchWrite|TransactGet|TransactWrite)Item|^(Query|Scan)Command$/;
const WRITES = new Set(['PutItemCommand', 'UpdateItemCommand', 'DeleteItemCommand', 'BatchWriteItemCommand', 'TransactWriteItemsCommand']);

interface Consumed {
  TableName?: string;
  CapacityUnits?: number;
}

export class CloseMeter {
  private readonly contexts = new AsyncLocalStorage<Context>();
  private readonly use = new Map<string, RoleUse>();
  /** SQS commands by name, from every SQS client of the process (the scheduler's sends, the local pollers' receives). */
  readonly sqs: Record<string, number> = {};

  /** Runs `work` as `role`; its requests are counted as that role's, and its round trips among themselves. */
  run<T>(role: string, work: () => Promise<T>): Promise<T> {
    return this.contexts.run({ role, inFlight: 0 }, work);
  }

  /** Renames the current context's role from here on (a run that moves to another part of its work). */
  switchRole(role: string): void {
    const context = this.contexts.getStore();
    if (context) context.role = role;
  }

  roles(): Record<string, RoleUse> {
    return Object.fromEntries(this.use);
  }

  attach<Input extends object, Output extends object>(service: Service, stack: MiddlewareStack<Input, Output>, outside: string): void {
    if (service === 'dynamodb') {
      stack.add(
        (next, context) => async (args) => {
          if (DYNAMO_DATA.test(String(context.commandName))) Object.assign(args.input, { ReturnConsumedCapacity: 'TOTAL' });
          return next(args);
        },
        { step: 'initialize', name: 'closesBenchConsumedCapacity' },
      );
    }
    stack.add(
      (next, context) => async (args) => {
        const command = String(context.commandName);
        const store = this.contexts.getStore();
        const use = this.roleUse(store?.role ?? outside);
        use.requests[service] += 1;
        use.commands[command] = (use.commands[command] ?? 0) + 1;
        if (store) {
          if (store.inFlight === 0) use.roundTrips[service] += 1;
          store.inFlight += 1;
        } else use.roundTrips[service] += 1;
        try {
          const result = await next(args);
          if (service === 'dynamodb') this.addUnits(use, command, args.input as { TableName?: string }, (result.output as { ConsumedCapacity?: Consumed | Consumed[] }).ConsumedCapacity);
          return result;
        } catch (error) {
          if ((error as Error).name === 'ConditionalCheckFailedException') {
            use.conditionalFailures += 1;
            const table = String((args.input as { TableName?: string }).TableName ?? '?');
            use.writeUnits[table] = (use.writeUnits[table] ?? 0) + 1;
          }
          throw error;
        } finally {
          if (store) store.inFlight -= 1;
        }
      },
      { step: 'initialize', name: 'closesBenchMeter', priority: 'low' },
    );
  }

  /** Counts the SQS commands of every SQS client in this process (they are built per use, so none is reachable). */
  countSqs(): void {
    const send = SQSClient.prototype.send as (this: SQSClient, command: unknown) => Promise<unknown>;
    const counts = this.sqs;
    SQSClient.prototype.send = function (this: SQSClient, command: unknown) {
      const name = (command as { constructor: { name: string } }).constructor.name;
      counts[name] = (counts[name] ?? 0) + 1;
      return send.call(this, command);
    } as typeof SQSClient.prototype.send;
  }

  private addUnits(use: RoleUse, command: string, input: { TableName?: string }, consumed: Consumed | Consumed[] | undefined): void {
    const units = WRITES.has(command) ? use.writeUnits : use.readUnits;
    for (const c of [consumed ?? []].flat()) {
      const table = c.TableName ?? input.TableName ?? '?';
      units[table] = (units[table] ?? 0) + (c.CapacityUnits ?? 0);
    }
  }

  private roleUse(role: string): RoleUse {
    let use = this.use.get(role);
    if (!use) {
      use = { requests: { dynamodb: 0, s3: 0 }, roundTrips: { dynamodb: 0, s3: 0 }, commands: {}, writeUnits: {}, readUnits: {}, conditionalFailures: 0 };
      this.use.set(role, use);
    }
    return use;
  }
}
