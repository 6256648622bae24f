/** Runs `fn` and returns what it threw (sync or async); fails when it throws nothing. */
export async function caught(fn: () => unknown): Promise<unknown> {
  try {
    await fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected an error');
}
