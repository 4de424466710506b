import * as vscode from 'vscode';
import { ClientCommand, type GpuInventory, type RoutedRuntime, type RunResult, type RuntimeStatus } from './protocol';
import { formatCost } from './panel/render';
import type { SelectedRuntime } from './settings';

/** What the status bar knows: the daemon's state, the runtime, and this editor session's spend. */
export interface StatusState {
  daemon: 'starting' | 'running' | 'stopped' | 'failed';
  runtime?: RuntimeStatus;
  selected: SelectedRuntime;
  /** Summed costUsd of the run results received since the editor opened. */
  sessionSpendUsd: number;
}

/** "H100", "2×H100, A100-80GB", or "CPU" when the runtime has no GPU. */
export function formatGpus(gpus: readonly GpuInventory[] | undefined): string {
  if (!gpus?.length) return 'CPU';
  return gpus.map((g) => (g.count > 1 ? `${g.count}×${g.name}` : g.name)).join(', ');
}

/** The runtime's short name: "embedded", or its URL without the scheme and trailing slash. */
export function runtimeLabel(state: StatusState): string {
  const rt = state.runtime;
  if (rt && (rt.kind === 'embedded' || rt.url)) return rt.kind === 'embedded' ? 'embedded' : shortUrl(rt.url ?? '');
  return state.selected.kind === 'embedded' ? 'embedded' : shortUrl(state.selected.url);
}

function shortUrl(url: string): string {
  return url.replace(/^https?:\/\//, '').replace(/\/+$/, '');
}

/** The status bar text, e.g. "$(rocket) Slipstream: embedded · CPU · $0.0000". */
export function statusText(state: StatusState): string {
  const where = runtimeLabel(state);
  switch (state.daemon) {
    case 'starting':
      return `$(sync~spin) Slipstream: starting…`;
    case 'failed':
      return `$(error) Slipstream: daemon not running`;
    case 'stopped':
      return `$(circle-slash) Slipstream: stopped`;
  }
  const spend = formatCost(state.sessionSpendUsd);
  if (state.runtime && !state.runtime.connected) {
    // the embedded runtime starts on the first run; a remote one that does not answer is offline
    if (state.runtime.kind === 'embedded') return `$(rocket) Slipstream: ${where} · idle · ${spend}`;
    return `$(debug-disconnect) Slipstream: ${where} · offline · ${spend}`;
  }
  return `$(rocket) Slipstream: ${where} · ${formatGpus(state.runtime?.gpus)} · ${spend}`;
}

/** The hover text: the runtime's details and both spends. */
export function statusTooltip(state: StatusState): string {
  const rt = state.runtime;
  const lines = [`Slipstream daemon: ${state.daemon}`];
  if (rt) {
    lines.push(
      `Runtime: ${rt.kind === 'embedded' ? `embedded (local${rt.url ? `, ${rt.url}` : ''})` : rt.url ?? 'none'} — ${rt.connected ? 'connected' : 'not connected'}`,
      `GPUs: ${rt.gpus?.length ? rt.gpus.map((g) => `${g.count}× ${g.name} (${g.memoryGb} GB)`).join(', ') : 'none (CPU)'}`,
      `Endpoints: ${rt.endpoints}`,
      `Runtime spend: ${formatCost(rt.spendUsd)}`,
    );
  }
  lines.push(`Spend since the editor opened: ${formatCost(state.sessionSpendUsd)}`, '', 'Click for runtime status');
  return lines.join('\n');
}

/** One runtime of a project with [runtimes] in slipstream.toml, e.g.
 * "$(server) gpu-box · H100 · $0.0012", "$(debug-disconnect) gpu-box · offline · H100 (declared)". */
export function routedText(rt: RoutedRuntime): string {
  const spend = formatCost(rt.spendUsd);
  if (!rt.connected) {
    if (rt.kind === 'embedded') return `$(vm) ${rt.name} · idle · ${formatGpus(rt.gpus)}`;
    return `$(debug-disconnect) ${rt.name} · offline${rt.gpus.length ? ` · ${formatGpus(rt.gpus)} (declared)` : ''}`;
  }
  return `$(${rt.kind === 'embedded' ? 'vm' : 'server'}) ${rt.name} · ${formatGpus(rt.gpus)} · ${spend}`;
}

/** The hover of one runtime's item: address, state, GPUs, endpoints routed there, spend. */
export function routedTooltip(rt: RoutedRuntime): string {
  return [
    `Slipstream runtime "${rt.name}" (${rt.kind === 'embedded' ? 'embedded, local' : rt.url})`,
    rt.connected ? 'connected' : rt.kind === 'embedded' ? 'starts on the first run' : 'offline: not answering',
    `GPUs: ${rt.gpus.length ? rt.gpus.map((g) => `${g.count}× ${g.name}${g.memoryGb ? ` (${g.memoryGb} GB)` : ''}`).join(', ') : 'none (CPU)'}`,
    `Endpoints routed here: ${rt.endpoints.length ? rt.endpoints.join(', ') : 'none'}`,
    `Spend: ${formatCost(rt.spendUsd)}`,
  ].join('\n');
}

/** The status bar item; click shows the runtime status. */
export class StatusBar implements vscode.Disposable {
  readonly item: vscode.StatusBarItem;
  readonly state: StatusState;
  /** One item per runtime when the project routes over several ([runtimes] in slipstream.toml). */
  readonly routed = new Map<string, vscode.StatusBarItem>();

  constructor(selected: SelectedRuntime) {
    this.item = vscode.window.createStatusBarItem('slipstream.status', vscode.StatusBarAlignment.Left, 50);
    this.item.name = 'Slipstream';
    this.item.command = ClientCommand.showStatus;
    this.state = { daemon: 'starting', selected, sessionSpendUsd: 0 };
    this.render();
    this.item.show();
  }

  setDaemon(daemon: StatusState['daemon']): void {
    this.state.daemon = daemon;
    this.render();
  }

  setSelected(selected: SelectedRuntime): void {
    this.state.selected = selected;
    this.render();
  }

  setRuntime(runtime: RuntimeStatus): void {
    this.state.runtime = runtime;
    if (this.state.daemon !== 'running') this.state.daemon = 'running';
    this.render();
    this.renderRouted(runtime.runtimes ?? []);
  }

  private renderRouted(runtimes: readonly RoutedRuntime[]): void {
    const names = new Set(runtimes.map((r) => r.name));
    for (const [name, item] of this.routed) {
      if (!names.has(name)) {
        item.dispose();
        this.routed.delete(name);
      }
    }
    runtimes.forEach((rt, i) => {
      let item = this.routed.get(rt.name);
      if (!item) {
        item = vscode.window.createStatusBarItem(`slipstream.runtime.${rt.name}`, vscode.StatusBarAlignment.Left, 49 - i / 100);
        item.name = `Slipstream runtime ${rt.name}`;
        item.command = ClientCommand.showStatus;
        this.routed.set(rt.name, item);
      }
      item.text = routedText(rt);
      item.tooltip = routedTooltip(rt);
      item.backgroundColor = !rt.connected && rt.kind !== 'embedded' ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
      item.show();
    });
  }

  addRun(result: RunResult): void {
    if (Number.isFinite(result.costUsd)) this.state.sessionSpendUsd += result.costUsd;
    this.render();
  }

  private render(): void {
    this.item.text = statusText(this.state);
    this.item.tooltip = statusTooltip(this.state);
    this.item.backgroundColor =
      this.state.daemon === 'failed' ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
  }

  dispose(): void {
    this.item.dispose();
    for (const item of this.routed.values()) item.dispose();
    this.routed.clear();
  }
}
