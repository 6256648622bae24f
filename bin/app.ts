import { readFileSync, realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { App, type AppProps, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ConfigError, parseConfig } from '../functions/core/config';
import { acknowledgeNagFindings } from '../lib/nag-suppressions';
import { StatefulStack } from '../lib/stateful-stack';
import { StatelessStack } from '../lib/stateless-stack';

const DEFAULT_CONFIG = 'config/example.json';

export interface UsagePipelineApp {
  app: App;
  stateful: StatefulStack;
  stateless: StatelessStack;
}

/**
 * Builds both stacks. The configuration file (argument, else context `config`, else the example)
 * is validated first, so a bad file stops synth with the key at fault before anything is bundled.
 */
export function buildApp(configPath?: string, props: AppProps = {}): UsagePipelineApp {
  const app = new App(props);
  const fromContext: unknown = app.node.tryGetContext('config');
  const configFile = resolve(configPath ?? (typeof fromContext === 'string' ? fromContext : DEFAULT_CONFIG));
  parseConfig(readConfigText(configFile), configFile);

  // No account or region: the templates are environment-agnostic and synth needs no credentials.
  const stateful = new StatefulStack(app, 'UsagePipeline-Stateful', { description: 'Usage pipeline: tables and queues' });
  const stateless = new StatelessStack(app, 'UsagePipeline-Stateless', {
    description: 'Usage pipeline: functions, HTTP API, alarms',
    tables: stateful.tables,
    usageQueue: stateful.usageQueue,
    deadLetterQueue: stateful.deadLetterQueue,
    configFile,
  });

  Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { writeSuppressionsToCloudFormation: true }));
  acknowledgeNagFindings(stateless);
  return { app, stateful, stateless };
}

function readConfigText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
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
