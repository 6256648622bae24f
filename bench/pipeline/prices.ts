/**
 * AWS on-demand list prices, US East (N. Virginia), looked up on 2026-11-24. Free tiers are left out:
 * the benchmark prices a million events at the margin.
 */
export const PRICES = {
  region: 'us-east-1',
  lookedUp: '2026-11-24',
  dynamodb: {
    /** On-demand, Standard table class, since the 50% cut of November 2024. */
    perMillionWriteRequestUnits: 0.625,
    perMillionReadRequestUnits: 0.125,
    source: 'https://aws.amazon.com/dynamodb/pricing/on-demand/',
  },
  lambda: {
    /** Arm (Graviton), first pricing tier (up to 7.5 billion GB-seconds a month). */
    perGbSecondArm: 0.0000133334,
    perMillionRequests: 0.2,
    source: 'https://aws.amazon.com/lambda/pricing/',
  },
  sqs: {
    /** Standard queue, 1 million to 100 billion requests a month; a request is one API call per 64 KB of payload. */
    perMillionRequests: 0.4,
    source: 'https://aws.amazon.com/sqs/pricing/',
  },
} as const;
