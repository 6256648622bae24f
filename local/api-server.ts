import { readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { extname, join, resolve, sep } from 'node:path';
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { isPagePath, SECURITY_HEADERS } from '../dashboard/site';

/** Serves the API handler over HTTP the way API Gateway's HTTP API (payload 2.0) calls it. */
export type ApiHandler = (event: APIGatewayProxyEventV2, context: Context) => Promise<APIGatewayProxyResultV2>;

/**
 * The API under /v1 (and its /openapi.json), and with `staticRoot` the dashboard's build: its files and the
 * page at the page's own paths (dashboard/site.ts), on one origin, so the page calls the API without CORS.
 * Every other path goes to the API handler too, which answers an unknown one with its JSON 404.
 */
export async function startApiServer(options: { port: number; handler: ApiHandler; context: () => Context; staticRoot?: string }): Promise<{ url: string; server: Server; stop(): Promise<void> }> {
  const staticRoot = options.staticRoot;
  const server = createServer(async (request, response) => {
    try {
      // A file of the build or a page path; anything else, as any other method, is the API's (a JSON 404 when no route has it).
      if (staticRoot && !isApiPath(request.url ?? '/') && (request.method === 'GET' || request.method === 'HEAD') && (await serveStatic(staticRoot, request, response))) return;
      const event = await toEvent(request);
      const result = (await options.handler(event, options.context())) as APIGatewayProxyStructuredResultV2;
      response.writeHead(result.statusCode ?? 200, (result.headers ?? {}) as Record<string, string>);
      response.end(result.body ?? '');
    } catch {
      response.writeHead(500, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ error: { code: 'internal_error', message: 'The request could not be completed.' } }));
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Paths the API answers; everything else belongs to the dashboard. */
export function isApiPath(url: string): boolean {
  const path = url.split('?')[0] ?? '/';
  return path === '/v1' || path.startsWith('/v1/') || path === '/openapi.json';
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

/**
 * A file of the build, or index.html at one of the page's own paths (isPagePath); false when it is
 * neither, and the caller answers. A path that resolves outside the root is never served; a missing
 * asset is never the page in its place. Hashed assets are cached for good, index.html never.
 */
async function serveStatic(root: string, request: IncomingMessage, response: ServerResponse): Promise<boolean> {
  const base = resolve(root);
  let path: string;
  try {
    path = decodeURIComponent(new URL(request.url ?? '/', 'http://local').pathname);
  } catch {
    return false;
  }
  const file = resolve(join(base, path));
  if (path.includes('\0') || (file !== base && !file.startsWith(base + sep))) return false;
  let target = file;
  const found = await stat(file).catch(() => undefined);
  if (!found?.isFile()) {
    if (!isPagePath(path)) return false;
    target = join(base, 'index.html');
  }
  const body = await readFile(target);
  const immutable = target.startsWith(join(base, 'assets') + sep);
  response.writeHead(200, {
    'content-type': CONTENT_TYPES[extname(target)] ?? 'application/octet-stream',
    'content-length': body.length,
    'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
    ...SECURITY_HEADERS,
  });
  response.end(request.method === 'HEAD' ? undefined : body);
  return true;
}

async function toEvent(request: IncomingMessage): Promise<APIGatewayProxyEventV2> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks).toString('utf8');
  const url = new URL(request.url ?? '/', 'http://local');
  const query: Record<string, string> = {};
  for (const [key, value] of url.searchParams) query[key] = key in query ? `${query[key]},${value}` : value;
  const headers: Record<string, string> = {};
  for (const [key, value] of Object.entries(request.headers)) if (value !== undefined) headers[key] = Array.isArray(value) ? value.join(',') : value;
  const method = request.method ?? 'GET';
  const now = new Date();
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    headers,
    ...(Object.keys(query).length > 0 ? { queryStringParameters: query } : {}),
    requestContext: {
      accountId: '000000000000',
      apiId: 'local',
      domainName: headers.host ?? '127.0.0.1',
      domainPrefix: 'local',
      http: { method, path: url.pathname, protocol: 'HTTP/1.1', sourceIp: request.socket.remoteAddress ?? '127.0.0.1', userAgent: headers['user-agent'] ?? '' },
      requestId: `${now.getTime()}`,
      routeKey: '$default',
      stage: '$default',
      time: now.toISOString(),
      timeEpoch: now.getTime(),
    },
    ...(body ? { body } : {}),
    isBase64Encoded: false,
  };
}
