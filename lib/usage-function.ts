import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Aws, CfnCondition, Duration, Fn, Stack, Token } from 'aws-cdk-lib';
import { type ITable, Table } from 'aws-cdk-lib/aws-dynamodb';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { Architecture, Runtime, Tracing } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { CONFIG_FILE_ENV, EMAIL_ENV, FUNCTIONS, type TableDefinition } from '../functions/contract/resources';
import { SERVICE_NAME } from '../functions/contract/telemetry';

export type FunctionName = keyof typeof FUNCTIONS;
export type TableAccess = 'read' | 'write' | 'readWrite';
export type QueueAccess = 'send' | 'consume';
export type BucketAccess = 'read' | 'write' | 'readWrite';

/** A bucket grant made by bindBucket, kept so that its (prefix-scoped) wildcards can be acknowledged for cdk-nag. */
export interface BucketBinding {
  readonly bucket: IBucket;
  readonly access: BucketAccess;
  readonly prefix: string;
}

export interface UsageFunctionProps {
  /** The handler file `functions/<name>.handler.ts`; also picks timeout and memory from FUNCTIONS. */
  readonly name: FunctionName;
  /** Absolute path of the configuration file, already validated; it ships inside the bundle. */
  readonly configFile: string;
  /** Concurrent executions reserved for (and capping) this function; unset means the account's unreserved pool. */
  readonly reservedConcurrency?: number;
}

const projectRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Where Lambda unpacks the bundle. */
const TASK_ROOT = '/var/task';
/** Bundled CommonJS dependencies call `require`, which an ES module does not have. */
const REQUIRE_SHIM = "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);";

/** A handler of this project with the defaults every function shares, and one-call bindings. */
export class UsageFunction extends NodejsFunction {
  /** Every bindBucket call, in order. */
  readonly bucketBindings: BucketBinding[] = [];

  constructor(scope: Construct, id: string, { name, configFile, reservedConcurrency }: UsageFunctionProps) {
    const { timeoutSeconds, memoryMb } = FUNCTIONS[name];
    super(scope, id, {
      entry: join(projectRoot, 'functions', `${name}.handler.ts`),
      projectRoot,
      depsLockFilePath: join(projectRoot, 'package-lock.json'),
      runtime: Runtime.NODEJS_22_X,
      architecture: Architecture.ARM_64,
      timeout: Duration.seconds(timeoutSeconds),
      memorySize: memoryMb,
      reservedConcurrentExecutions: reservedConcurrency,
      tracing: Tracing.ACTIVE,
      // Created here (not by Lambda on first write) so that retention is set and the group is part of the stack.
      logGroup: new LogGroup(scope, `${id}Logs`, { retention: RetentionDays.ONE_MONTH }),
      environment: {
        NODE_OPTIONS: '--enable-source-maps',
        POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
        [CONFIG_FILE_ENV]: `${TASK_ROOT}/config.json`,
      },
      bundling: {
        format: OutputFormat.ESM,
        target: 'node22',
        minify: true,
        sourceMap: true,
        banner: REQUIRE_SHIM,
        mainFields: ['module', 'main'],
        // The SDK is bundled at the locked versions rather than taken from the runtime, whose copy is older and
        // untested here: ~545 KB more per bundle, and a shorter cold import (docs/operations.md, "Deploying").
        externalModules: [],
        commandHooks: {
          beforeBundling: () => [],
          beforeInstall: () => [],
          // The bundle carries its configuration, so a config change is a code change (new asset hash).
          afterBundling: (_inputDir, outputDir) => [`cp ${shellQuote(configFile)} ${shellQuote(`${outputDir}/config.json`)}`],
        },
      },
    });
  }

  /**
   * Passes the table name in `definition.envVar` and grants exactly the requested access, to the table's items.
   * CDK's grants on a table with indexes reach every index (`<table>/index/*`) too; here they do not: an index
   * is granted on its own, to the function that queries it (bindIndex).
   */
  bindTable(table: ITable, definition: TableDefinition, access: TableAccess): this {
    this.addEnvironment(definition.envVar, table.tableName);
    const items = definition.indexes?.length ? this.withoutIndexes(table, definition) : table;
    if (access === 'read') items.grantReadData(this);
    else if (access === 'write') items.grantWriteData(this);
    else items.grantReadWriteData(this);
    return this;
  }

  /** Passes the table name in `definition.envVar` and allows dynamodb:Query on the one index named: nothing else of the table. */
  bindIndex(table: ITable, definition: TableDefinition, indexName: string): this {
    if (!definition.indexes?.some((index) => index.name === indexName)) throw new Error(`bindIndex: table ${definition.name} has no index "${indexName}"`);
    this.addEnvironment(definition.envVar, table.tableName);
    this.addToRolePolicy(new PolicyStatement({ actions: ['dynamodb:Query'], resources: [`${table.tableArn}/index/${indexName}`] }));
    return this;
  }

  /** The same table, seen without its indexes, so that its grants name the table's ARN alone (one view per function and table). */
  private withoutIndexes(table: ITable, definition: TableDefinition): ITable {
    const id = `${definition.name}WithoutIndexes`;
    const existing = this.node.tryFindChild(id) as ITable | undefined;
    return existing ?? Table.fromTableAttributes(this, id, { tableArn: table.tableArn, encryptionKey: table.encryptionKey });
  }

  /** Passes the queue URL in `envVar` and grants sending or consuming. */
  bindQueue(queue: IQueue, envVar: string, access: QueueAccess): this {
    this.addEnvironment(envVar, queue.queueUrl);
    if (access === 'send') queue.grantSendMessages(this);
    else queue.grantConsumeMessages(this);
    return this;
  }

  /**
   * Passes the bucket name in `envVar` and grants the requested access to the objects under `prefix` only.
   * Reading brings s3:List* and s3:GetBucket* on the bucket itself; writing is put (and abort of multipart
   * uploads), never delete: `readWrite` is read plus put, not grantReadWrite, which adds s3:DeleteObject*.
   */
  bindBucket(bucket: IBucket, envVar: string, access: BucketAccess, prefix: string): this {
    // An empty prefix would silently widen the grant to every object of the bucket.
    if (prefix === '') throw new Error(`bindBucket: ${this.node.path} needs a key prefix`);
    const objects = `${prefix}*`;
    this.addEnvironment(envVar, bucket.bucketName);
    if (access !== 'write') bucket.grantRead(this, objects);
    if (access !== 'read') bucket.grantPut(this, objects);
    this.bucketBindings.push({ bucket, access, prefix });
    return this;
  }

  /**
   * Allows ses:SendEmail as the identity of `sender` (the config's `notifications.from`) and passes the
   * configuration set (a stack parameter; empty: none) in EMAIL_ENV. The identity is derived from the sender,
   * never given apart, so the two cannot disagree. SES authorizes the address identity when the account
   * verified the address, else its domain's, so both are named. When a message names a configuration set,
   * SES authorizes that too.
   */
  bindEmail(sender: string, configurationSet: string): this {
    const domain = sender.slice(sender.lastIndexOf('@') + 1);
    // Known at synth: an address with a domain (the config schema's rule), so the ARNs below are exact.
    if (Token.isUnresolved(sender) || !sender.includes('@') || domain === '') throw new Error(`bindEmail: ${this.node.path} needs a sender address known at synth, got "${sender}"`);
    this.addEnvironment(EMAIL_ENV.configurationSet, configurationSet);
    const stack = Stack.of(this);
    const arn = (resource: string, resourceName: string) => stack.formatArn({ service: 'ses', resource, resourceName });
    let configurationSetArns: string[] = [];
    if (Token.isUnresolved(configurationSet)) {
      // Known only at deploy time: the statement names the configuration set only when the value is non-empty.
      const inUse = new CfnCondition(this, 'SesConfigurationSetInUse', { expression: Fn.conditionNot(Fn.conditionEquals(configurationSet, '')) });
      configurationSetArns = [Token.asString(Fn.conditionIf(inUse.logicalId, arn('configuration-set', configurationSet), Aws.NO_VALUE))];
    } else if (configurationSet !== '') {
      configurationSetArns = [arn('configuration-set', configurationSet)];
    }
    this.addToRolePolicy(new PolicyStatement({ actions: ['ses:SendEmail'], resources: [arn('identity', sender), arn('identity', domain), ...configurationSetArns] }));
    return this;
  }
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}
