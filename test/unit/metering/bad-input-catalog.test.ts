import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from '@jest/globals';
import { ERROR_CODES } from '../../../functions/core/errors';
import { REJECTION_REASONS } from '../../../functions/core/metering/envelope';

/**
 * The "Bad input" catalog in docs/events.md names every reason an event is quarantined for and every code a request is
 * refused with. The source has one list of each (REJECTION_REASONS, ERROR_CODES); the compiler holds every
 * thrown error to them, and this test holds docs/events.md to them and them to the code.
 */

const readme = readFileSync(new URL('../../../docs/events.md', import.meta.url), 'utf8');

/** The text from the "### Bad input" heading to the next heading of the same or a higher level. */
function catalog(): string {
  const start = readme.indexOf('\n### Bad input\n');
  if (start < 0) throw new Error('docs/events.md has no "### Bad input" section');
  const rest = readme.slice(start + 1);
  const end = rest.slice(4).search(/\n#{1,3} /);
  return end < 0 ? rest : rest.slice(0, end + 4);
}

/** Codes the catalog names in backticks at the start of a table cell or after a "/" or ",". */
const codeIn = (text: string, code: string) => new RegExp(`\`${code}\``).test(text);

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

describe('the bad-input catalog', () => {
  test('names every rejection reason of an event', () => {
    // Act
    const missing = REJECTION_REASONS.filter((reason) => !codeIn(catalog(), reason));

    // Assert
    expect(missing).toEqual([]);
  });

  test('names every error code of a request', () => {
    // Act
    const missing = ERROR_CODES.filter((code) => !codeIn(catalog(), code));

    // Assert
    expect(missing).toEqual([]);
  });

  test('the lists hold every code the handlers and the local runtime throw or answer with', () => {
    // Arrange: `new XxxError('code', …)` and `code: 'code'` in every source file that can answer a request
    const root = new URL('../../../', import.meta.url).pathname;
    const files = [...sourceFiles(join(root, 'functions')), ...sourceFiles(join(root, 'local'))];
    const pattern = /new (?:InvalidRequest|NotFound|Conflict|Unauthorized|Forbidden)Error\(\s*'([a-z_]+)'|error: \{ code: '([a-z_]+)'/g;

    // Act
    const used = new Set<string>();
    for (const file of files) for (const match of readFileSync(file, 'utf8').matchAll(pattern)) used.add((match[1] ?? match[2]) as string);

    // Assert: the scan finds codes (it reads what it should), and each is in one of the lists
    expect(used.size).toBeGreaterThan(10);
    const listed = new Set<string>([...ERROR_CODES, ...REJECTION_REASONS]);
    expect([...used].filter((code) => !listed.has(code))).toEqual([]);
  });

  test('names no code the source does not define', () => {
    // Act: every backticked snake_case word in a table row of the catalog
    const rows = catalog()
      .split('\n')
      .filter((line) => line.startsWith('|'));
    const named = new Set(rows.flatMap((row) => [...row.matchAll(/`([a-z]+(?:_[a-z]+)+)`/g)].map((m) => m[1] as string)));
    const listed = new Set<string>([...ERROR_CODES, ...REJECTION_REASONS]);

    // Assert
    expect([...named].filter((code) => !listed.has(code))).toEqual([]);
  });
});
