import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { METRICS_NAMESPACE, SERVICE_NAME } from '../contract/telemetry';

/**
 * Attributes that are never logged, whatever they hold: a Lambda event (Powertools logs it as `event`
 * when POWERTOOLS_LOGGER_LOG_EVENT is set), request headers and bodies, and the items an SDK error may
 * carry (ConditionalCheckFailed `Item`, TransactionCanceled `CancellationReasons[].Item`).
 */
const WITHHELD = new Set(['event', 'headers', 'authorization', 'body', 'Item', 'Items', 'NewImage', 'OldImage']);

/**
 * Secrets that can hide inside any text, such as an error message: SES names the addresses it refused
 * ("… failed the check in region US-EAST-1: a@example.com"), and an Authorization value may be echoed.
 */
const SECRET_PATTERNS: readonly [RegExp, string][] = [
  [/[\w.+-]+@[\w-]+(?:\.[\w-]+)+/g, '[email]'],
  [/\bupk_[0-9a-f]{16}_[\w-]+/g, '[api-key]'],
  [/\b(Bearer|Basic)\s+[^\s"',;]+/gi, '$1 [redacted]'],
];

/** Scrubs a log item as Powertools serializes it: withheld attributes go, secrets in text are masked. */
export function redactLogValue(key: string, value: unknown): unknown {
  if (WITHHELD.has(key)) return '[withheld]';
  if (typeof value !== 'string') return value;
  return SECRET_PATTERNS.reduce((text, [pattern, replacement]) => text.replace(pattern, replacement), value);
}

/** One logger and one metrics sink for every handler. */
export const logger = new Logger({ serviceName: SERVICE_NAME, jsonReplacerFn: redactLogValue });
export const metrics = new Metrics({ namespace: METRICS_NAMESPACE, serviceName: SERVICE_NAME });
