import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { type LocalStack, startLocal } from '../../local/runtime';
import type { Bucket, Granularity } from '../../testkit/ground-truth';
import { checkResponse } from './api-contract';

/** The admin key every test fixture config declares. */
export const ADMIN_KEY = 'test-admin-key-000000000000';
export const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

/** Starts a local stack on a suite's own config (written to a fresh temporary file), its clock at `clockStart`. */
export function startLocalWithConfig(config: unknown, clockStart: Date): Promise<LocalStack> {
  const configPath = join(mkdtempSync(join(tmpdir(), 'usage-config-')), 'config.json');
  writeFileSync(configPath, JSON.stringify(config));
  return startLocal({ clockStart, configPath, onError: () => undefined });
}

/** Talks to a running local stack the way a producer and a reader would: SQS in, HTTP out. */
export class StackClient {
  readonly sqs: SQSClient;

  constructor(readonly stack: LocalStack) {
    this.sqs = new SQSClient({
      region: stack.ready.region,
      endpoint: stack.ready.sqs.endpoint,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
  }

  /** Sends message bodies with SendMessageBatch, ten at a time; returns the message ids. */
  async send(bodies: readonly string[], queueUrl = this.stack.ready.sqs.queueUrl): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < bodies.length; i += 10) {
      const entries = bodies.slice(i, i + 10).map((MessageBody, j) => ({ Id: String(j), MessageBody }));
      const response = await this.sqs.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries }));
      if (response.Failed?.length) throw new Error(`SendMessageBatch failed: ${JSON.stringify(response.Failed)}`);
      ids.push(...(response.Successful ?? []).map((s) => s.MessageId ?? ''));
    }
    return ids;
  }

  async get(path: string, key = ADMIN_KEY): Promise<{ status: number; body: unknown }> {
    const response = await fetch(`${this.stack.ready.api}${path}`, { headers: bearer(key) });
    const body: unknown = await response.json();
    checkResponse('GET', path, response.status, body);
    return { status: response.status, body };
  }

  /** Every bucket of a subject in [from, to), fetched in windows the API accepts. */
  async buckets(subject: string, granularity: Granularity, from: Date, to: Date): Promise<Bucket[]> {
    const windowMs = 90 * 86_400_000;
    const buckets: Bucket[] = [];
    for (let start = from.getTime(); start < to.getTime(); start += windowMs) {
      const end = Math.min(start + windowMs, to.getTime());
      const { status, body } = await this.get(`/v1/workspaces/${subject}/usage?granularity=${granularity}&from=${new Date(start).toISOString()}&to=${new Date(end).toISOString()}`);
      if (status !== 200) throw new Error(`usage query failed with ${status}: ${JSON.stringify(body)}`);
      buckets.push(...(body as { buckets: Bucket[] }).buckets);
    }
    return buckets;
  }

  async quarantine(subject?: string): Promise<{ reason: string; detail: string; body: string; subject?: string }[]> {
    const { body } = await this.get(`/v1/quarantine?limit=1000${subject ? `&subject=${subject}` : ''}`);
    return (body as { items: { reason: string; detail: string; body: string; subject?: string }[] }).items;
  }

  close(): void {
    this.sqs.destroy();
  }
}
