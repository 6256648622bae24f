/**
 * The fauxqs S3 stand-in, alone in its own process for the export benchmark: fauxqs keeps stored
 * objects in memory, so a stand-in inside a measured process would count every exported file
 * against that process's RSS. Prints `{"endpoint": …}` on one line once listening; exits when its
 * stdin closes, so it never outlives the benchmark that started it.
 */
import { buildApp } from 'fauxqs';

/** Real S3 takes up to 5 GB in one PutObject; fauxqs caps bodies at 11 MiB (enough for multipart parts). */
const SINGLE_PUT_LIMIT = 2 ** 31 - 1;

const app = buildApp({ logger: false, defaultRegion: process.env.AWS_REGION ?? 'us-east-1' });
// fauxqs removes Fastify's JSON parser so S3 bodies reach its buffer parser; a JSON parser of our own with
// a higher limit lets the buffered baseline put its whole document at once, as it could against S3.
app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: SINGLE_PUT_LIMIT }, (_request: unknown, body: Buffer, done: (error: Error | null, body?: Buffer) => void) =>
  done(null, body),
);
await app.listen({ port: 0, host: '127.0.0.1' });
const address = app.server.address();
const port = typeof address === 'object' && address ? address.port : 0;
process.stdout.write(`${JSON.stringify({ endpoint: `http://127.0.0.1:${port}` })}\n`);

const stop = () => void app.close().finally(() => process.exit(0));
process.stdin.once('end', stop).resume();
process.once('SIGTERM', stop);
