/**
 * bench/results/pipeline.svg: two panels of grouped bars, write units per unique event (lower is
 * better) and unique events per second end to end (higher is better), one group per scenario and one
 * bar per contender. Plain SVG, written by hand, so that docs/performance.md can show it without a dependency.
 */

/** A dashed line across one scenario's bars on the write-unit panel: the target for ours. */
export interface ChartMark {
  scenario: string;
  value: number;
}

export interface ChartRow {
  scenario: string;
  label: string;
  ours: boolean;
  writeUnitsPerEvent: number;
  eventsPerSecond: number;
}

const WIDTH = 960;
const HEIGHT = 410;
const PANEL = { top: 72, bottom: 310, width: 420 };
const PALETTE = ['#1b7f79', '#e07b39', '#7d5ba6', '#76c7c0'];
const MARK = '#c0392b';

export function renderChart(rows: ChartRow[], writeUnitMarks: ChartMark[] = []): string {
  const labels = [...new Set(rows.map((r) => r.label))];
  const color = (label: string) => PALETTE[labels.indexOf(label) % PALETTE.length] ?? '#888';
  const legend = labels.map(
    (label, i) => `<rect x="${40 + i * 220}" y="${HEIGHT - 46}" width="12" height="12" fill="${color(label)}"/><text x="${58 + i * 220}" y="${HEIGHT - 36}">${escape(label)}</text>`,
  );
  if (writeUnitMarks.length > 0) {
    const targets = writeUnitMarks.map((m) => `≤ ${m.value} ${m.scenario}`).join(', ');
    legend.push(
      `<line x1="40" x2="52" y1="${HEIGHT - 16}" y2="${HEIGHT - 16}" stroke="${MARK}" stroke-width="1.5" stroke-dasharray="4 2"/><text x="58" y="${HEIGHT - 12}">target for ours: ${escape(targets)}</text>`,
    );
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#fff"/>`,
    `<text x="${WIDTH / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">Usage pipeline vs. per-event counters (DynamoDB Local + SQS stand-in)</text>`,
    panel(rows, 40, 'Write units per unique event (lower is better)', (r) => r.writeUnitsPerEvent, 2, color, writeUnitMarks),
    panel(rows, 520, 'Unique events per second, sustained (higher is better)', (r) => r.eventsPerSecond, 0, color, []),
    ...legend,
    '</svg>',
    '',
  ].join('\n');
}

function panel(rows: ChartRow[], left: number, title: string, value: (r: ChartRow) => number, digits: number, color: (label: string) => string, marks: ChartMark[]): string {
  const scenarios = [...new Set(rows.map((r) => r.scenario))];
  const max = niceCeiling(Math.max(...rows.map(value), ...marks.map((m) => m.value)));
  const plotHeight = PANEL.bottom - PANEL.top;
  const y = (v: number) => PANEL.bottom - (v / max) * plotHeight;
  const groupWidth = PANEL.width / scenarios.length;
  const parts = [`<text x="${left + PANEL.width / 2}" y="${PANEL.top - 18}" text-anchor="middle" font-weight="bold">${escape(title)}</text>`];
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    parts.push(`<line x1="${left}" x2="${left + PANEL.width}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`);
    parts.push(`<text x="${left - 4}" y="${y(v) + 4}" text-anchor="end" fill="#555">${format(v, digits)}</text>`);
  }
  scenarios.forEach((scenario, g) => {
    const group = rows.filter((r) => r.scenario === scenario);
    const barWidth = Math.min(56, (groupWidth - 40) / group.length);
    const start = left + g * groupWidth + (groupWidth - barWidth * group.length) / 2;
    group.forEach((row, i) => {
      const v = value(row);
      const x = start + i * barWidth;
      parts.push(
        `<rect x="${x + 2}" y="${y(v)}" width="${barWidth - 4}" height="${PANEL.bottom - y(v)}" fill="${color(row.label)}"><title>${escape(`${scenario}, ${row.label}: ${format(v, digits + 1)}`)}</title></rect>`,
      );
      parts.push(`<text x="${x + barWidth / 2}" y="${y(v) - 4}" text-anchor="middle"${row.ours ? ' font-weight="bold"' : ''}>${format(v, digits)}</text>`);
    });
    parts.push(`<text x="${left + g * groupWidth + groupWidth / 2}" y="${PANEL.bottom + 18}" text-anchor="middle">${escape(scenario)}</text>`);
    for (const mark of marks.filter((m) => m.scenario === scenario)) {
      const end = start + barWidth * group.length;
      parts.push(`<line x1="${start - 6}" x2="${end + 6}" y1="${y(mark.value)}" y2="${y(mark.value)}" stroke="${MARK}" stroke-width="1.5" stroke-dasharray="6 4"/>`);
    }
  });
  parts.push(`<line x1="${left}" x2="${left + PANEL.width}" y1="${PANEL.bottom}" y2="${PANEL.bottom}" stroke="#333"/>`);
  return parts.join('\n');
}

/** The smallest round axis maximum at or above `v`, so that its quarter ticks are round too. */
function niceCeiling(v: number): number {
  if (!(v > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(v));
  return ([1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8, 10].find((m) => m * power >= v) ?? 10) * power;
}

const format = (v: number, digits: number) => v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
