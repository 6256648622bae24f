import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildApp } from '../../bin/app';
import { ConfigError, parseConfig } from '../../functions/core/config';

const fixture = (name: string) => fileURLToPath(new URL(`fixtures/${name}`, import.meta.url));

describe('configuration at synth', () => {
  it('rejects a plan quota for an unknown usage type, naming the key', () => {
    const build = () => buildApp(fixture('bad-config.json'));
    expect(build).toThrow(ConfigError);
    expect(build).toThrow(/plans\[0\]\.quotas\.minutes: unknown usage type "minutes"/);
  });

  it('reads the file named by the `config` context', () => {
    expect(() => buildApp(undefined, { context: { config: fixture('bad-config.json') } })).toThrow(/plans\[0\]\.quotas\.minutes/);
  });

  it('stops on a missing file, naming it and the committed example to start from', () => {
    const build = () => buildApp(undefined, { context: { config: 'config/prod-missing.json' } });
    expect(build).toThrow(ConfigError);
    expect(build).toThrow(/config\/prod-missing\.json: \(root\): no such file; .*config\/prod\.example\.json/);
  });
});

describe("docs/operations.md's deploy command", () => {
  const readme = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');
  const deploying = readme.slice(readme.indexOf('## Deploying'), readme.indexOf('\n## ', readme.indexOf('## Deploying') + 1));
  const named = [...deploying.matchAll(/-c config=([\w./-]+)/g)].map((m) => m[1] ?? '');

  it('names a configuration file that is in the repository and valid, without local API keys', () => {
    expect(named.length).toBeGreaterThan(0);
    for (const file of named) {
      const path = fileURLToPath(new URL(`../../${file}`, import.meta.url));
      expect([file, existsSync(path)]).toEqual([file, true]);
      const config = parseConfig(readFileSync(path, 'utf8'), file);
      // API keys in a file are for the local runtime; a deployment makes its own (docs/api.md, "API keys").
      expect(config.apiKeys).toEqual([]);
    }
  });
});
