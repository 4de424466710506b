import * as vscode from 'vscode';
import { ClientCommand, type GpuInventory, type RunResult, type RuntimeStatus } from './protocol';
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

/** The status bar item; click shows the runtime status. */
export class StatusBar implements vscode.Disposable {
  readonly item: vscode.StatusBarItem;
  readonly state: StatusState;

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
  }
}
