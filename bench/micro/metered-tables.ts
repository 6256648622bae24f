import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { TABLES } from '../../functions/contract/resources';
import { createTables } from '../../local/bootstrap';
import { LOCAL_CREDENTIALS, startDynamoDbLocal } from '../../local/stand-ins';
import { DynamoMeter } from '../pipeline/capacity-meter';

/** A DynamoDB Local of its own with the project's tables, every request metered, stopped once `use` settles. */
export async function withMeteredTables<T>(use: (local: { client: DynamoDBClient; names: Record<keyof typeof TABLES, string>; meter: DynamoMeter }) => Promise<T>): Promise<T> {
  const dynamo = await startDynamoDbLocal({ region: 'us-east-1' });
  const client = new DynamoDBClient({ region: 'us-east-1', endpoint: dynamo.endpoint, credentials: LOCAL_CREDENTIALS });
  try {
    const { names } = await createTables(client);
    const meter = new DynamoMeter();
    meter.attach(client.middlewareStack);
    return await use({ client, names, meter });
  } finally {
    client.destroy();
    await dynamo.stop();
  }
}
