import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, Tooltip } from 'chart.js';
import { type ChartRows, formatAmount } from './cards';

// Only what a stacked bar chart needs, so the bundle carries no other chart type.
Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);

/** One colour per channel, distinguishable and at least 3:1 against white (WCAG non-text contrast). */
const COLOURS: Record<string, string> = { ui: '#2563eb', api: '#0d9488', cli: '#7c3aed', mcp: '#c2410c', other: '#6b7280' };
const FALLBACK = ['#be185d', '#4d7c0f', '#0369a1', '#a16207'];
export const CHANNEL_NAMES: Record<string, string> = { ui: 'Web app', api: 'API', cli: 'CLI', mcp: 'MCP', other: 'No channel' };
export const channelName = (channel: string) => CHANNEL_NAMES[channel] ?? channel;

/** The usage chart: stacked bars per channel; `show` swaps its data in place. */
export function usageChart(canvas: HTMLCanvasElement): { show(rows: ChartRows, unit: string): void; destroy(): void } {
  const reducedMotion = window.matchMedia('(prefers-reduced-motion: reduce)').matches;
  const chart = new Chart<'bar', number[], string>(canvas, {
    type: 'bar',
    data: { labels: [], datasets: [] },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: reducedMotion ? false : { duration: 250 },
      interaction: { mode: 'index', intersect: false },
      scales: {
        x: { stacked: true, grid: { display: false }, ticks: { color: '#4b5563', maxRotation: 0, autoSkipPadding: 12 } },
        y: { stacked: true, beginAtZero: true, border: { display: false }, grid: { color: '#e5e7eb' }, ticks: { color: '#4b5563', callback: (v) => compact(Number(v)) } },
      },
      plugins: {
        legend: { position: 'bottom', align: 'start', labels: { boxWidth: 12, boxHeight: 12, color: '#374151', padding: 16 } },
        tooltip: { callbacks: { label: (item) => `${item.dataset.label ?? ''}: ${formatAmount(Number(item.raw))}` } },
      },
    },
  });
  return {
    show(rows, unit) {
      chart.data.labels = rows.labels;
      chart.data.datasets = rows.channels.map(({ channel, values }, i) => ({
        label: channelName(channel),
        data: values,
        backgroundColor: COLOURS[channel] ?? FALLBACK[i % FALLBACK.length],
        borderRadius: 3,
        maxBarThickness: 48,
      }));
      const total = rows.totals.reduce((a, b) => a + b, 0);
      canvas.setAttribute('aria-label', `Stacked bar chart of ${unit}s per period and channel, ${formatAmount(total)} in all. The table below holds the same numbers.`);
      chart.update();
    },
    destroy: () => chart.destroy(),
  };
}

const compact = (value: number) => new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 }).format(value);
