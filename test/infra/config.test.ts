import { fileURLToPath } from 'node:url';
import { buildApp } from '../../bin/app';
import { ConfigError } from '../../functions/core/config';

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
});
