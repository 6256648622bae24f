import type { DynamoDBBatchResponse, DynamoDBStreamEvent } from 'aws-lambda';

/** Exports table stream (new jobs) → write each export to S3. */
export async function handler(_event: DynamoDBStreamEvent): Promise<DynamoDBBatchResponse> {
  return { batchItemFailures: [] };
}
