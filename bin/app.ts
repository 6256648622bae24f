import { mkdtempSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { App, type AppProps, Stack, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { type Config, ConfigError, parseConfig } from '../functions/core/config';
import { DashboardSite } from '../lib/dashboard-site';
import { acknowledgeDashboardNagFindings, acknowledgeNagFindings } from '../lib/nag-suppressions';
import { StatefulStack } from '../lib/stateful-stack';
import { StatelessStack } from '../lib/stateless-stack';

const DEFAULT_CONFIG = 'config/example.json';
/** The committed configuration for a deployment, without local API keys or demo workspaces (docs/operations.md, "Deploying"). */
const DEPLOY_EXAMPLE = 'config/prod.example.json';

export interface UsagePipelineApp {
  app: App;
  stateful: StatefulStack;
  stateless: StatelessStack;
  dashboard: DashboardSite;
}

/**
 * Builds both stacks. The configuration file (argument, else context `config`, else the example)
 * is validated first, so a bad file stops synth with the key at fault before anything is bundled.
 */
export function buildApp(configPath?: string, props: AppProps = {}): UsagePipelineApp {
  const app = new App(props);
  const fromContext: unknown = app.node.tryGetContext('config');
  const configFile = resolve(configPath ?? (typeof fromContext === 'string' ? fromContext : DEFAULT_CONFIG));
  const config = parseConfig(readConfigText(configFile), configFile);

  // No account or region: the templates are environment-agnostic and synth needs no credentials.
  const stateful = new StatefulStack(app, 'UsagePipeline-Stateful', {
    description: 'Usage pipeline: tables, queues and the reports bucket',
    ...(config.closes.warmWritesPerSecond === undefined ? {} : { closesWarmWritesPerSecond: config.closes.warmWritesPerSecond }),
  });
  const stateless = new StatelessStack(app, 'UsagePipeline-Stateless', {
    description: 'Usage pipeline: functions, HTTP API, alarms',
    tables: stateful.tables,
    usageQueue: stateful.usageQueue,
    deadLetterQueue: stateful.deadLetterQueue,
    reportsBucket: stateful.reportsBucket,
    configFile: deployableConfigFile(configFile, config),
    emailSender: config.notifications.from,
  });

  const dashboard = new DashboardSite(new Stack(app, 'UsagePipeline-Dashboard', { description: 'Usage pipeline: the dashboard (S3 + CloudFront, /v1/* to the HTTP API)' }), 'Site', {
    api: stateless.api,
  });

  Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { writeSuppressionsToCloudFormation: true }));
  acknowledgeNagFindings(stateful, stateless);
  acknowledgeDashboardNagFindings(dashboard);
  return { app, stateful, stateless, dashboard };
}

/**
 * The file the functions bundle. API keys in a config file are for the local runtime: a deployment
 * creates its keys with `usage-pipeline keys create`, so a copy without them is bundled instead.
 */
export function deployableConfigFile(path: string, config: Config): string {
  if (config.apiKeys.length === 0) return path;
  const raw = JSON.parse(readConfigText(path)) as Record<string, unknown>;
  delete raw.apiKeys;
  const copy = join(mkdtempSync(join(tmpdir(), 'usage-pipeline-config-')), 'config.json');
  writeFileSync(copy, JSON.stringify(raw, null, 2));
  return copy;
}

function readConfigText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    // A missing file is most often a deploy command copied before the operator made their own config.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ConfigError(path, '', `no such file; name an existing one with -c config=<file> (${DEPLOY_EXAMPLE} is a starting point to copy)`);
    }
    throw new ConfigError(path, '', `cannot read the file (${(error as Error).message})`);
  }
}

function isMain(): boolean {
  const script = process.argv[1];
  return script !== undefined && realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
}

if (isMain()) {
  try {
    buildApp();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    process.exitCode = 1;
  }
}
