import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { DynamoMeter } from './capacity-meter';
import type { FunctionUse } from './pipeline-protocol';

/** What every contender runs with: the instruments the child reads, and the shape of a started contender. */

export interface Hooks {
  /** Handlers wait here until the queue is loaded, so that every contender starts on the same full queue. */
  gate: Gate;
  clock: HandlerClock;
  visibility: Visibility;
  meter: DynamoMeter;
  onError(message: string): void;
}

export interface ContenderStack {
  sqs: { endpoint: string; queueUrl: string };
  dynamodb: { endpoint: string };
  /** Where the counters are: the project's rollup items, or the baselines' one item per hour, day and cycle. */
  counters: { table: string; layout: 'rollups' | 'counters' };
  /** Resolves once the queue is empty and nothing is being processed. */
  settle(): Promise<void>;
  stop(): Promise<void>;
}

/** Closed at first; closed again between the warm-up and the measured phase. */
export class Gate {
  private release: () => void = () => undefined;
  opened = this.closedPromise();
  open(): void {
    this.release();
  }
  close(): void {
    this.opened = this.closedPromise();
  }
  private closedPromise(): Promise<void> {
    return new Promise<void>((resolve) => (this.release = resolve));
  }
}

/** One handler invocation, in performance.now() milliseconds (BENCH_TIMELINE, docs/performance.md "Performance"). */
export interface Invocation {
  function: string;
  startMs: number;
  endMs: number;
  records: number;
}

/**
 * Wall time per function (what Lambda bills) and process CPU while any handler runs. CPU is read with
 * process.cpuUsage() when the first invocation starts and the last one ends, so overlapping invocations
 * are not counted twice; what else the process does meanwhile (pollers, the in-process SQS stand-in) is.
 */
export class HandlerClock {
  private running = 0;
  private since: NodeJS.CpuUsage | undefined;
  private cpuMicros = 0;
  private functions: Record<string, FunctionUse> = {};
  private invocations: Invocation[] = [];

  /** `records`: the size of the invocation's batch, kept in the timeline. */
  async time<T>(name: string, memoryMb: number, records: number, invoke: () => Promise<T>): Promise<T> {
    if (this.running++ === 0) this.since = process.cpuUsage();
    const started = performance.now();
    try {
      return await invoke();
    } finally {
      const ended = performance.now();
      const use = (this.functions[name] ??= { invocations: 0, durationMs: 0, memoryMb });
      use.invocations += 1;
      use.durationMs += ended - started;
      this.invocations.push({ function: name, startMs: started, endMs: ended, records });
      if (--this.running === 0) {
        const { user, system } = process.cpuUsage(this.since);
        this.cpuMicros += user + system;
      }
    }
  }

  /** What was measured since the last take; called between phases, when no handler runs. */
  take(): { functions: Record<string, FunctionUse>; handlerCpuMs: number; invocations: Invocation[] } {
    const taken = { functions: this.functions, handlerCpuMs: this.cpuMicros / 1000, invocations: this.invocations };
    this.functions = {};
    this.cpuMicros = 0;
    this.invocations = [];
    return taken;
  }
}

/**
 * Send and first-visible instants of the events sent through `sent`; other events are only counted in
 * `reported`, every key `visible` is given (a retried record may be reported twice).
 */
export class Visibility {
  private readonly sentAt = new Map<string, number>();
  private readonly visibleAt = new Map<string, number>();
  reported = 0;
  private tracking: { base: number; expected: number; from?: Mark; to?: Mark } | undefined;

  sent(key: string, at: number): void {
    if (!this.sentAt.has(key)) this.sentAt.set(key, at);
  }

  /** Events that became visible together, in one commit: one instant for all of them. */
  visible(keys: readonly string[]): void {
    const now = Date.now();
    this.reported += keys.length;
    if (this.tracking) this.mark(this.tracking);
    for (const key of keys) if (this.sentAt.has(key) && !this.visibleAt.has(key)) this.visibleAt.set(key, now);
  }

  /** Starts noting when the reports from now on first reach 10% and 90% of `expected`. */
  track(expected: number): void {
    this.tracking = { base: this.reported, expected };
  }

  /**
   * Reports per second between the 10% and 90% marks of what `track` expects: the rate the contender
   * sustains, without the time its first events take to come through or the wait for its last
   * batch. Undefined if both marks fell in one report (a run of one aggregate batch).
   */
  sustained(): { reports: number; seconds: number } | undefined {
    const { from, to } = this.tracking ?? {};
    this.tracking = undefined;
    if (!from || !to || to.at <= from.at) return undefined;
    return { reports: to.reports - from.reports, seconds: (to.at - from.at) / 1000 };
  }

  private mark(tracking: NonNullable<Visibility['tracking']>): void {
    const reports = this.reported - tracking.base;
    const at = performance.now();
    if (!tracking.from && reports >= 0.1 * tracking.expected) tracking.from = { at, reports };
    if (!tracking.to && reports >= 0.9 * tracking.expected) tracking.to = { at, reports };
  }

  get pending(): number {
    return this.sentAt.size - this.visibleAt.size;
  }

  get lastVisibleAt(): number {
    return Math.max(0, ...this.visibleAt.values());
  }

  latenciesMs(): number[] {
    return [...this.visibleAt].map(([key, at]) => at - (this.sentAt.get(key) ?? at));
  }
}

interface Mark {
  at: number;
  reports: number;
}

/** Peak RSS, sampled every 50 ms; `reset` starts a new phase. */
export class RssSampler {
  private peak = 0;
  private readonly timer = setInterval(() => this.sample(), 50);

  sample(): void {
    this.peak = Math.max(this.peak, process.memoryUsage().rss);
  }

  reset(): number {
    this.sample();
    const peak = this.peak;
    this.peak = 0;
    return peak / (1024 * 1024);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/**
 * CPU time of the DynamoDB Local (Java) process serving `endpoint`, from /proc: the other half of the
 * machine, which the process's own cpuUsage() does not see. Undefined where /proc or pgrep is missing.
 */
export function emulatorCpu(endpoint: string): (() => number) | undefined {
  try {
    const port = new URL(endpoint).port;
    const pid = execFileSync('pgrep', ['-f', `DynamoDBLocal.jar.* -port ${port}( |$)`], { encoding: 'utf8' })
      .trim()
      .split('\n')[0];
    const msPerTick = 10; // USER_HZ is 100 on Linux
    const read = () => {
      // utime and stime, after the parenthesised command name
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      return (Number(fields[11]) + Number(fields[12])) * msPerTick;
    };
    read();
    return read;
  } catch {
    return undefined;
  }
}
