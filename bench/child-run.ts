import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

/** A bench run speaks on stdout in lines: `PROGRESS <text>` while it works, one `RESULT <json>` at the end. */
export const PROGRESS_PREFIX = 'PROGRESS ';
export const RESULT_PREFIX = 'RESULT ';

/**
 * Runs `script` with its plan (as JSON, its one argument) in a fresh Node process under tsx, so that each run
 * starts cold and alone; shows its progress lines as they come; resolves with its result, its exit code and the
 * tail of its stderr. It dies with the bench.
 */
export async function runBenchScript<R>(script: string, plan: unknown, options: { cwd: string; nodeArgs?: string[] }): Promise<{ result?: R; code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), '--import', 'tsx', script, JSON.stringify(plan)], {
    cwd: options.cwd,
    env: { PATH: process.env.PATH ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  let result: R | undefined;
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-8000)));
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (line.startsWith(PROGRESS_PREFIX)) console.log(`    ${line.slice(PROGRESS_PREFIX.length)}`);
    if (line.startsWith(RESULT_PREFIX)) result = JSON.parse(line.slice(RESULT_PREFIX.length)) as R;
  });
  const code = await new Promise<number | null>((done) => child.once('close', done));
  process.removeListener('exit', kill);
  return { ...(result === undefined ? {} : { result }), code, stderr };
}
