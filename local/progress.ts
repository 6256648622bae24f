/** A one-line progress bar on stderr (stdout stays machine-readable). */
export function progressBar(label: string, total: number): { tick(done: number): void; end(): void } {
  const width = 30;
  const tty = process.stderr.isTTY;
  let last = -1;
  const draw = (done: number) => {
    const ratio = total === 0 ? 1 : Math.min(1, done / total);
    const percent = Math.floor(ratio * 100);
    if (percent === last) return;
    last = percent;
    const filled = Math.round(ratio * width);
    const line = `${label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(percent).padStart(3)}% ${done}/${total}`;
    if (tty) process.stderr.write(`\r${line}`);
    else if (percent % 25 === 0) process.stderr.write(`${line}\n`);
  };
  return {
    tick: draw,
    end: () => {
      draw(total);
      if (tty) process.stderr.write('\n');
    },
  };
}
