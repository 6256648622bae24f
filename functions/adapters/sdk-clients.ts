/**
 * Takes the SDK's own logging off a client. It builds a redacted copy of every request and response
 * for its logger, even the default one that discards them: 0.44 → 0.41 ms of client CPU per ledger
 * put (`npm run bench:ledger-put`). The handlers log through Powertools (observability.ts) instead.
 * Call before the first request.
 */
export function withoutSdkLogging<Client extends { middlewareStack: { remove(name: string): boolean } }>(client: Client): Client {
  client.middlewareStack.remove('loggerMiddleware');
  return client;
}
