import { SESClient, SendEmailCommand } from '@aws-sdk/client-ses';
import type { Email, EmailSender } from '../core/alerts/alerts-ports';
import { backoff } from './dynamodb';
import { withoutSdkLogging } from './sdk-clients';

/** SES error codes that mean "slow down": retried with backoff, beyond the SDK's own retries. */
const THROTTLED = new Set(['Throttling', 'ThrottlingException', 'TooManyRequestsException', 'MaxSendingRateExceeded']);
const MAX_ATTEMPTS = 8;

/** One SES v1 SendEmail per message (one recipient each), with a text and an HTML part. */
export class SesEmailSender implements EmailSender {
  constructor(
    readonly client: SESClient,
    private readonly configurationSet?: string,
  ) {}

  async send(email: Email): Promise<string> {
    const command = new SendEmailCommand({
      Source: email.from,
      Destination: { ToAddresses: [email.to] },
      Message: {
        Subject: { Data: email.subject, Charset: 'UTF-8' },
        Body: { Text: { Data: email.text, Charset: 'UTF-8' }, Html: { Data: email.html, Charset: 'UTF-8' } },
      },
      ...(this.configurationSet ? { ConfigurationSetName: this.configurationSet } : {}),
    });
    for (let attempt = 0; ; attempt++) {
      try {
        const { MessageId } = await this.client.send(command);
        return MessageId ?? '';
      } catch (error) {
        const name = error instanceof Error ? error.name : '';
        if (!THROTTLED.has(name) || attempt + 1 >= MAX_ATTEMPTS) throw error;
        await backoff(attempt, 100, 5000);
      }
    }
  }
}

export function createSesClient(): SESClient {
  return withoutSdkLogging(new SESClient({ maxAttempts: 3 }));
}
