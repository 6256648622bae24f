import { readFileSync } from 'node:fs';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

/**
 * Checks HTTP responses against the committed OpenAPI document (openapi.json): the operation must be
 * described, the status listed, and the body valid against its schema. Throws with the reason otherwise.
 */

interface Operation {
  responses: Record<string, { content?: Record<string, { schema: object }> }>;
}
interface Document {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, object> };
}

export const openApi = JSON.parse(readFileSync(new URL('../../openapi.json', import.meta.url), 'utf8')) as Document;

const ajv = new Ajv2020({ strict: false, allErrors: true });
(addFormats as unknown as (a: Ajv2020) => void)(ajv);
ajv.addSchema({ $id: 'openapi', components: openApi.components }, 'openapi');

const templates = Object.keys(openApi.paths).map((template) => ({
  template,
  pattern: new RegExp(`^${template.replace(/[.]/g, '\\.').replace(/\{\w+\}/g, '[^/]+')}$`),
}));

/** The documented path template a concrete path matches, e.g. /v1/workspaces/ws_a/quotas → /v1/workspaces/{id}/quotas. */
export function templateOf(path: string): string | undefined {
  const bare = path.split('?')[0] ?? path;
  return templates.find((t) => t.pattern.test(bare))?.template;
}

const validators = new Map<string, ValidateFunction>();

export function checkResponse(method: string, path: string, status: number, body: unknown): void {
  const template = templateOf(path);
  const operation = template ? openApi.paths[template]?.[method.toLowerCase()] : undefined;
  if (!operation) throw new Error(`${method} ${path} is not in openapi.json`);
  const response = operation.responses[String(status)];
  if (!response) throw new Error(`${method} ${template} answered ${status}, which openapi.json does not list`);
  const schema = response.content?.['application/json']?.schema;
  if (!schema) throw new Error(`${method} ${template} ${status} has no JSON schema`);
  const key = `${method} ${template} ${status}`;
  let validate = validators.get(key);
  if (!validate) {
    // $refs point into the document's components.
    validate = ajv.compile(JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"openapi#/components/')) as object);
    validators.set(key, validate);
  }
  if (!validate(body)) throw new Error(`${method} ${template} ${status}: body does not match openapi.json: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body).slice(0, 500)}`);
}
