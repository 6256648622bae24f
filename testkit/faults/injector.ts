import { DynamoDBServiceException, InternalServerError, ProvisionedThroughputExceededException, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { S3ServiceException } from '@aws-sdk/client-s3';
import { SESServiceException } from '@aws-sdk/client-ses';
import type { MiddlewareStack } from '@smithy/types';
import { Random } from '../random';

/**
 * A seeded fault injector for the AWS SDK v3 clients the handlers share. Added to a client's middleware
 * stack ahead of the SDK's own retries, it decides per request, from its seed alone:
 *   error-before   the service refuses (HTTP 500): nothing was written, the caller sees the error;
 *   error-after    the request is sent and applied, then the caller sees a 500 (the answer was lost);
 *   throttle       ProvisionedThroughputExceededException; for TransactWriteItems a TransactionCanceledException
 *                  with TransactionConflict; for SES `Throttling`;
 *   crash-before   the process dies before sending: this and every later request of the invocation fail,
 *                  and the driver treats the invocation as failed whatever it returned;
 *   crash-after    the same, once the request has been applied.
 * Every fault is tallied by kind and by step (`phase operation table`).
 */

export const FAULT_KINDS = ['error-before', 'error-after', 'throttle', 'crash-before', 'crash-after'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
export type Phase = 'ingest' | 'aggregate' | 'notify' | 'scheduler' | 'closes' | 'check';
export type Service = 'dynamodb' | 'ses' | 's3';

/** Probability of a fault per request, by phase; the check phase reads the results and is never faulted. */
export type FaultRates = Record<Exclude<Phase, 'check'>, number>;

/** An email send whose outcome the caller cannot know: SES accepted it, but its "sent" mark was never written. */
export interface DuplicateWindow {
  to: string;
  /** The alert's key in the alerts table: subject # cycle start # usage type # threshold. */
  alert?: string;
  /** The email's subject line and reset date, for a send (the mark names the alert instead). */
  subject?: string;
  resets?: string;
}

export class InjectedCrash extends Error {
  override readonly name = 'InjectedCrash';
}

export class FaultInjector {
  phase: Phase = 'check';
  /** While calm, nothing is injected: a delivery that failed several times goes through, as a real outage ends. */
  calm = false;
  readonly tally = new Map<string, number>();
  readonly windows: DuplicateWindow[] = [];
  private readonly random: Random;
  private dead = false;
  private crashedThisInvocation = false;

  /** Physical table name → short name, for the step labels. */
  tableNames: Record<string, string> = {};

  constructor(
    seed: number,
    private readonly rates: FaultRates,
  ) {
    this.random = new Random(seed);
  }

  /** Starts an invocation of `phase`; `calm` turns injection off for it. */
  begin(phase: Exclude<Phase, 'check'>, calm = false): void {
    this.phase = phase;
    this.calm = calm;
    this.dead = false;
    this.crashedThisInvocation = false;
  }

  /** Ends the invocation; true if it crashed (the driver then discards its result). */
  end(): boolean {
    const crashed = this.crashedThisInvocation;
    this.phase = 'check';
    this.calm = false;
    this.dead = false;
    this.crashedThisInvocation = false;
    return crashed;
  }

  get injected(): number {
    return [...this.tally.values()].reduce((a, b) => a + b, 0);
  }

  /** Injected faults by kind, and by step. */
  summary(): { total: number; byKind: Record<string, number>; byStep: Record<string, Record<string, number>> } {
    const byKind: Record<string, number> = {};
    const byStep: Record<string, Record<string, number>> = {};
    for (const [key, count] of [...this.tally].sort()) {
      const [kind = '', step = ''] = key.split('\u0000');
      byKind[kind] = (byKind[kind] ?? 0) + count;
      (byStep[step] ??= {})[kind] = count;
    }
    return { total: this.injected, byKind, byStep };
  }

  attach<Input extends object, Output extends object>(stack: MiddlewareStack<Input, Output>, service: Service): void {
    stack.add(
      (next, context) => async (args) => {
        const operation = String((context as { commandName?: string }).commandName ?? '?').replace(/Command$/, '');
        const input = (args as { input: Record<string, unknown> }).input;
        const step = `${this.phase} ${operation}${this.tableOf(input)}`;
        const mark = markSentOf(operation, input);
        if (this.dead) {
          if (mark) this.windows.push(mark);
          throw new InjectedCrash(`injected: the process died before ${step}`);
        }
        const kind = this.pick(service, operation);
        if (!kind) return next(args);
        this.tally.set(`${kind}\u0000${step}`, (this.tally.get(`${kind}\u0000${step}`) ?? 0) + 1);
        if (kind === 'error-after' || kind === 'crash-after') {
          await next(args);
          if (operation === 'SendEmail') this.windows.push(sendOf(input));
          if (kind === 'crash-after') this.die();
          throw serverError(service, `injected: the answer to ${step} was lost`);
        }
        if (mark) this.windows.push(mark);
        if (kind === 'crash-before') {
          this.die();
          throw new InjectedCrash(`injected: the process died before ${step}`);
        }
        throw kind === 'throttle' ? throttling(service, operation, input) : serverError(service, `injected: ${step} failed`);
      },
      { step: 'initialize', name: 'faultInjector', priority: 'high' },
    );
  }

  private die(): void {
    this.dead = true;
    this.crashedThisInvocation = true;
  }

  private pick(service: Service, operation: string): FaultKind | undefined {
    if (this.phase === 'check' || this.calm) return undefined;
    if (this.random.int(1_000_000) >= this.rates[this.phase] * 1_000_000) return undefined;
    const kinds = service === 'dynamodb' || service === 'ses' ? FAULT_KINDS : FAULT_KINDS.filter((k) => k !== 'throttle');
    // A read has nothing to lose after it is applied: only its failures count.
    const reads = /^(Get|BatchGet|Query|Scan|List|Head|Describe)/.test(operation);
    const usable = reads ? kinds.filter((k) => !k.endsWith('-after')) : kinds;
    return usable[this.random.int(usable.length)];
  }

  private tableOf(input: Record<string, unknown>): string {
    const name = typeof input.TableName === 'string' ? input.TableName : typeof input.Bucket === 'string' ? 'reports' : Object.keys((input.RequestItems as object | undefined) ?? {})[0];
    const items = input.TransactItems as { Update?: { TableName?: string }; Put?: { TableName?: string } }[] | undefined;
    const table = name ?? items?.[0]?.Update?.TableName ?? items?.[0]?.Put?.TableName;
    return table ? ` ${this.tableNames[table] ?? table}` : '';
  }
}

function serverError(service: Service, message: string): Error {
  const $metadata = { httpStatusCode: 500 };
  if (service === 'dynamodb') return new InternalServerError({ message, $metadata });
  if (service === 's3') return new S3ServiceException({ name: 'InternalError', $fault: 'server', message, $metadata });
  return new SESServiceException({ name: 'InternalFailure', $fault: 'server', message, $metadata });
}

function throttling(service: Service, operation: string, input: Record<string, unknown>): DynamoDBServiceException | SESServiceException {
  const $metadata = { httpStatusCode: 400 };
  if (service === 'ses') return new SESServiceException({ name: 'Throttling', $fault: 'client', message: 'Maximum sending rate exceeded.', $metadata });
  if (operation === 'TransactWriteItems') {
    // What DynamoDB answers when another transaction holds one of the items: that item conflicts, the others did nothing.
    const items = (input.TransactItems as unknown[] | undefined)?.length ?? 1;
    const conflicting = items - 1;
    return new TransactionCanceledException({
      message: 'Transaction cancelled, please refer cancellation reasons for specific reasons [TransactionConflict]',
      $metadata,
      CancellationReasons: Array.from({ length: items }, (_, i) => (i === conflicting ? { Code: 'TransactionConflict', Message: 'Transaction is ongoing for the item' } : { Code: 'None' })),
    });
  }
  return new ProvisionedThroughputExceededException({ message: 'The level of configured provisioned throughput for the table was exceeded.', $metadata });
}

/** The alert-store write that marks a contact sent (SET sentTo = list_append(…)). */
function markSentOf(operation: string, input: Record<string, unknown>): DuplicateWindow | undefined {
  if (operation !== 'UpdateItem') return undefined;
  const names = input.ExpressionAttributeNames as Record<string, string> | undefined;
  if (names?.['#list'] !== 'sentTo') return undefined;
  const contact = (input.ExpressionAttributeValues as Record<string, unknown> | undefined)?.[':contact'];
  const key = input.Key as { pk?: unknown; sk?: unknown } | undefined;
  return { to: Array.isArray(contact) ? String(contact[0]) : '?', alert: `${String(key?.pk)}#${String(key?.sk)}` };
}

function sendOf(input: Record<string, unknown>): DuplicateWindow {
  const email = input as { Destination?: { ToAddresses?: string[] }; Message?: { Subject?: { Data?: string }; Body?: { Text?: { Data?: string } } } };
  return {
    to: email.Destination?.ToAddresses?.[0] ?? '?',
    subject: email.Message?.Subject?.Data ?? '',
    resets: /resets on (.*)\./.exec(email.Message?.Body?.Text?.Data ?? '')?.[1] ?? '?',
  };
}
