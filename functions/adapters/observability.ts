import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';

/** One logger and one metrics sink for every handler. */
export const logger = new Logger({ serviceName: 'usage-pipeline' });
export const metrics = new Metrics({ namespace: 'UsagePipeline', serviceName: 'usage-pipeline' });
