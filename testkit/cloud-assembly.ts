import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/**
 * What `cdk synth` wrote: the stacks' templates and the Lambda functions they define, each with the
 * asset directory that becomes its code. The artifact tests and the bundling bench read it.
 */

export const projectRoot = fileURLToPath(new URL('..', import.meta.url));
/** Where Lambda unpacks a function's code; the template's environment may name files under it. */
export const LAMBDA_TASK_ROOT = '/var/task';

interface CfnResource {
  Type: string;
  Properties?: Record<string, unknown>;
  Metadata?: Record<string, unknown>;
}
export interface CfnTemplate {
  Parameters?: Record<string, { Type: string; Default?: unknown }>;
  Resources: Record<string, CfnResource>;
  Outputs?: Record<string, { Value: unknown; Export?: { Name: unknown } }>;
}

export interface SynthesizedFunction {
  stack: string;
  logicalId: string;
  /** The construct's id in its stack (`Ingest`), from the resource's `aws:cdk:path`. */
  constructId: string;
  runtime: string;
  /** `index.handler`: module and export. */
  handler: string;
  timeoutSeconds: number;
  memoryMb: number;
  /** cdk.out/asset.<hash>: what is zipped and uploaded as the function's code. */
  assetDir: string;
  environment: Record<string, unknown>;
}

export interface CloudAssembly {
  dir: string;
  templates: Record<string, CfnTemplate>;
  functions: SynthesizedFunction[];
}

/** Runs the `cdk synth` of docs/operations.md "Deploying" (cdk.json's app and context) into `outdir`, with `-c config=<configPath>`. */
export async function cdkSynth(outdir: string, configPath: string): Promise<void> {
  const cdk = join(projectRoot, 'node_modules', '.bin', 'cdk');
  // Jest's NODE_OPTIONS (--experimental-vm-modules) is not the app's.
  await promisify(execFile)(cdk, ['synth', '-q', '-o', outdir, '-c', `config=${configPath}`], { cwd: projectRoot, env: { ...process.env, NODE_OPTIONS: '' }, maxBuffer: 64 * 1024 * 1024 });
}

export function readCloudAssembly(dir: string): CloudAssembly {
  const templates: Record<string, CfnTemplate> = {};
  for (const file of readdirSync(dir).filter((name) => name.endsWith('.template.json'))) {
    templates[file.slice(0, -'.template.json'.length)] = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CfnTemplate;
  }
  const functions: SynthesizedFunction[] = [];
  for (const [stack, template] of Object.entries(templates)) {
    for (const [logicalId, resource] of Object.entries(template.Resources)) {
      if (resource.Type !== 'AWS::Lambda::Function') continue;
      const props = resource.Properties ?? {};
      const assetPath = resource.Metadata?.['aws:asset:path'];
      const cdkPath = String(resource.Metadata?.['aws:cdk:path'] ?? '');
      functions.push({
        stack,
        logicalId,
        constructId: cdkPath.split('/')[1] ?? logicalId,
        runtime: String(props.Runtime),
        handler: String(props.Handler),
        timeoutSeconds: Number(props.Timeout ?? 3),
        memoryMb: Number(props.MemorySize ?? 128),
        assetDir: typeof assetPath === 'string' ? join(dir, assetPath) : '',
        environment: ((props.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables ?? {}) as Record<string, unknown>,
      });
    }
  }
  return { dir, templates, functions };
}

/** A resource of the assembly with the construct id of its `aws:cdk:path`. */
export interface ResourceRef {
  stack: string;
  logicalId: string;
  type: string;
  constructId: string;
}

/**
 * Resolves a template value to the string a function would see: parameters take their defaults,
 * exports are followed to the stack that makes them, and a resource's Ref is what `physicalId` says
 * (the local stand-in's table name, queue URL, bucket). Anything else fails, naming the value.
 */
export function resolveValue(assembly: CloudAssembly, stack: string, value: unknown, physicalId: (resource: ResourceRef) => string): string {
  if (typeof value === 'string' || typeof value === 'number') return String(value);
  const template = assembly.templates[stack];
  if (!template || typeof value !== 'object' || value === null) throw new Error(`cannot resolve ${JSON.stringify(value)} in ${stack}`);
  const intrinsic = value as Record<string, unknown>;
  if (typeof intrinsic.Ref === 'string') {
    const parameter = template.Parameters?.[intrinsic.Ref];
    if (parameter) {
      if (typeof parameter.Default !== 'string') throw new Error(`parameter ${intrinsic.Ref} of ${stack} has no default`);
      return parameter.Default;
    }
    const resource = template.Resources[intrinsic.Ref];
    if (!resource) throw new Error(`${stack} has no resource or parameter ${intrinsic.Ref}`);
    return physicalId({ stack, logicalId: intrinsic.Ref, type: resource.Type, constructId: String(resource.Metadata?.['aws:cdk:path'] ?? '').split('/')[1] ?? '' });
  }
  if (typeof intrinsic['Fn::ImportValue'] === 'string') {
    const name = intrinsic['Fn::ImportValue'];
    for (const [exporter, other] of Object.entries(assembly.templates)) {
      const output = Object.values(other.Outputs ?? {}).find((o) => o.Export?.Name === name);
      if (output) return resolveValue(assembly, exporter, output.Value, physicalId);
    }
    throw new Error(`no stack exports ${name}`);
  }
  throw new Error(`cannot resolve ${JSON.stringify(value)} in ${stack}`);
}

/**
 * A function's code laid out as Lambda runs it: the asset directory copied to a fresh directory of its
 * own, outside this repository, so that an import the bundle leaves out finds no node_modules to fall
 * back on. Returns the directory (the function's LAMBDA_TASK_ROOT).
 */
export function layOutTaskRoot(fn: SynthesizedFunction, parent = tmpdir()): string {
  if (!fn.assetDir || !existsSync(fn.assetDir)) throw new Error(`${fn.constructId} has no asset directory in the assembly`);
  const root = mkdtempSync(join(parent, `task-${fn.constructId.toLowerCase()}-`));
  cpSync(fn.assetDir, root, { recursive: true });
  return root;
}

export interface Invocation {
  initMs?: number;
  result?: unknown;
  error?: { name: string; message: string };
  initError?: { name: string; message: string };
  /** The function's log lines (Powertools writes JSON to stdout). */
  logs: string;
}

/**
 * One cold invocation of `fn` on `node` (test/artifact/lambda-runner.mjs): a process of its own with
 * exactly the environment given (the template's variables, Lambda's reserved ones, the stand-ins').
 * `event` undefined only times the import.
 */
export async function invokeFunction(node: string, fn: SynthesizedFunction, taskRoot: string, environment: Record<string, string>, event?: unknown): Promise<Invocation> {
  const work = mkdtempSync(join(tmpdir(), 'invoke-'));
  try {
    const eventFile = join(work, 'event.json');
    const resultFile = join(work, 'result.json');
    if (event !== undefined) writeFileSync(eventFile, JSON.stringify(event));
    const runner = join(projectRoot, 'test', 'artifact', 'lambda-runner.mjs');
    // Asynchronous: stand-ins may serve from this very process (fauxqs, the SES stand-in).
    const { stdout } = await promisify(execFile)(node, [runner, event === undefined ? '-' : eventFile, resultFile, String(fn.timeoutSeconds)], {
      cwd: taskRoot,
      env: { ...environment, LAMBDA_TASK_ROOT: taskRoot, _HANDLER: fn.handler },
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    }).catch((error: { code?: number; stderr?: string }) => {
      throw new Error(`${fn.constructId} exited ${error.code}: ${error.stderr?.slice(-4000) ?? ''}`, { cause: error });
    });
    return { ...(JSON.parse(readFileSync(resultFile, 'utf8')) as Omit<Invocation, 'logs'>), logs: stdout };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The variables Lambda sets for every function (its reserved environment variables), with those of the template. */
export function lambdaEnvironment(fn: SynthesizedFunction, region: string): Record<string, string> {
  const name = `${fn.stack}-${fn.logicalId}`;
  return {
    AWS_REGION: region,
    AWS_DEFAULT_REGION: region,
    AWS_EXECUTION_ENV: `AWS_Lambda_${fn.runtime}`,
    AWS_LAMBDA_FUNCTION_NAME: name,
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(fn.memoryMb),
    AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
    AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
    AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${name}`,
    AWS_LAMBDA_LOG_STREAM_NAME: '[$LATEST]0123456789abcdef',
    LANG: 'en_US.UTF-8',
    TZ: ':UTC',
    PATH: '/usr/local/bin:/usr/bin:/bin',
  };
}
