import * as vscode from 'vscode';
import type { Daemon } from './client';
import type { OutputsPanel } from './panel';
import { formatCost } from './panel/render';
import {
  ServerCommand,
  type DeployResult,
  type EndpointInfo,
  type ModelAlternative,
  type ModelAlternatives,
  type RebuildKeptResult,
  type RuntimeStatus,
} from './protocol';
import { EMBEDDED, runtimes, runtimeToken, selectedRuntime, setSelectedRuntime, tokenKey, tomlRuntimeEntries, type RuntimeEntry } from './settings';
import { formatGpus, type StatusBar } from './status';

/** What the commands work with. */
export interface CommandContext {
  daemon: Daemon;
  panel: OutputsPanel;
  status: StatusBar;
  secrets: vscode.SecretStorage;
  log: vscode.LogOutputChannel;
}

/** An endpoint named by a lens or code action, or picked by the user. */
interface EndpointRef {
  uri: string;
  endpoint: string;
}

function isEndpointRef(arg: unknown): arg is EndpointRef {
  return typeof arg === 'object' && arg !== null && typeof (arg as EndpointRef).endpoint === 'string' && typeof (arg as EndpointRef).uri === 'string';
}

function fail(ctx: CommandContext, what: string, err: unknown): void {
  const message = err instanceof Error ? err.message : String(err);
  ctx.log.error(`${what}: ${message}`);
  void vscode.window.showErrorMessage(`Slipstream: ${what} failed: ${message}`);
}

/** QuickPick over the daemon's endpoints: those of the active Python file, else the workspace's. */
export async function pickEndpoint(ctx: CommandContext, title: string): Promise<EndpointRef | undefined> {
  const doc = vscode.window.activeTextEditor?.document;
  const active = doc?.languageId === 'python' ? doc.uri.toString() : undefined;
  let { endpoints } = await ctx.daemon.command<{ endpoints: EndpointInfo[] }>(ServerCommand.listEndpoints, active ? { uri: active } : {});
  if (!endpoints?.length && active) ({ endpoints } = await ctx.daemon.command<{ endpoints: EndpointInfo[] }>(ServerCommand.listEndpoints, {}));
  if (!endpoints?.length) {
    void vscode.window.showInformationMessage('Slipstream: no endpoints found. Mark a function with @endpoint(...) first.');
    return undefined;
  }
  const items = endpoints.map((e) => ({
    label: `$(play) ${e.name}`,
    description: e.gpu ?? 'CPU',
    detail: `${vscode.workspace.asRelativePath(vscode.Uri.parse(e.uri))}:${e.line + 1}`,
    ref: { uri: e.uri, endpoint: e.name },
  }));
  const picked = await vscode.window.showQuickPick(items, { title, placeHolder: 'Endpoint', matchOnDescription: true });
  return picked?.ref;
}

/** Slipstream: Run endpoint. With an argument ({uri, endpoint, ...}) it runs that one directly. */
export async function runEndpoint(ctx: CommandContext, arg?: unknown): Promise<void> {
  try {
    const ref = isEndpointRef(arg) ? arg : await pickEndpoint(ctx, 'Slipstream: Run endpoint');
    if (!ref) return;
    const { runId } = await ctx.daemon.command<{ runId: string }>(ServerCommand.run, isEndpointRef(arg) ? arg : ref);
    ctx.log.info(`Run ${runId}: ${ref.endpoint}`);
  } catch (err) {
    fail(ctx, 'Run endpoint', err);
  }
}

/** "✓ fits 80 GB · $0.00116/s": the QuickPick description of a model alternative. */
export function describeAlternative(item: ModelAlternative): string {
  const parts: string[] = [];
  if (item.fits !== undefined) parts.push(item.fits ? '$(check) fits' : '$(warning) too large');
  if (item.vramGb !== undefined) parts.push(`${item.vramGb.toFixed(1)} GB VRAM`);
  if (item.pricePerSecond !== undefined) parts.push(`$${item.pricePerSecond.toFixed(5)}/s`);
  return parts.join(' · ');
}

/** Slipstream: Swap model: alternatives from the daemon in a QuickPick, applied as a codemod. */
export async function swapModel(ctx: CommandContext, arg?: unknown): Promise<void> {
  try {
    const ref = isEndpointRef(arg) ? arg : await pickEndpoint(ctx, 'Slipstream: Swap model — which endpoint?');
    if (!ref) return;
    const alts = await ctx.daemon.command<ModelAlternatives>(ServerCommand.modelAlternatives, { uri: ref.uri, endpoint: ref.endpoint });
    if (!alts?.items?.length) {
      void vscode.window.showInformationMessage(`Slipstream: no model id found in ${ref.endpoint}, or no alternatives.`);
      return;
    }
    const items = alts.items.map((item) => ({
      label: item.id,
      description: `${item.id === alts.current ? '(current) ' : ''}${describeAlternative(item)}`,
      detail: item.description ?? (item.label && item.label !== item.id ? item.label : undefined),
      id: item.id,
    }));
    const picked = await vscode.window.showQuickPick(items, {
      title: `Swap model in ${ref.endpoint}${alts.current ? ` (now ${alts.current})` : ''}`,
      placeHolder: alts.kind ? `${alts.kind} models` : 'Models',
      matchOnDescription: true,
    });
    if (!picked || picked.id === alts.current) return;
    const { applied } = await ctx.daemon.command<{ applied: boolean }>(ServerCommand.applyModel, { ...ref, modelId: picked.id });
    if (!applied) void vscode.window.showWarningMessage(`Slipstream: could not swap in ${picked.id} (see the log).`);
  } catch (err) {
    fail(ctx, 'Swap model', err);
  }
}

/** The reload line of a good deploy: what changed, and what its kept objects did (followed, or still run old code). */
export function deployLine(r: DeployResult): string {
  let line = `Deployed generation ${r.generation ?? '?'}: ${r.changed.length} changed, ${r.uploaded} uploaded, ${Math.round(r.durationMs)} ms`;
  if (r.kept?.updated) line += `; ${r.kept.updated} kept object(s) follow the saved code`;
  const stale = r.kept?.stale ?? [];
  if (stale.length) line += `; ⚠ ${stale.length} kept object(s) run old code (${stale.map((s) => `${s.endpoint}: ${s.key}`).join(', ')}): Rebuild kept model`;
  return line;
}

/**
 * Slipstream: Rebuild kept model: loads an endpoint's kept objects again and re-runs its setup(),
 * so objects a reload left on their old code (a changed __init__) run the saved code. With an
 * argument ({uri, endpoint}: the quick fix, a run card) it rebuilds that one without asking.
 */
export async function rebuildKept(ctx: CommandContext, arg?: unknown): Promise<void> {
  try {
    const ref = isEndpointRef(arg) ? arg : await pickEndpoint(ctx, 'Slipstream: Rebuild kept model — which endpoint?');
    if (!ref) return;
    const keys = Array.isArray((arg as { keys?: unknown })?.keys) ? (arg as { keys: string[] }).keys : undefined;
    const result = await ctx.daemon.command<RebuildKeptResult>(ServerCommand.rebuildKept, { uri: ref.uri, endpoint: ref.endpoint, ...(keys ? { keys } : {}) });
    const message = result?.message || `${ref.endpoint}: rebuilt`;
    ctx.log.info(`Rebuild kept model: ${message}`);
    const still = result?.endpoints?.some((e) => e.stale.length) ?? false;
    if (result?.ok && !still) void vscode.window.showInformationMessage(`Slipstream: ${message}`);
    else void vscode.window.showWarningMessage(`Slipstream: ${message}`);
  } catch (err) {
    fail(ctx, 'Rebuild kept model', err);
  }
}

/** Tells the daemon which runtime to use now (from the settings and SecretStorage). */
export async function applyRuntime(ctx: CommandContext): Promise<void> {
  const rt = selectedRuntime();
  ctx.status.setSelected(rt);
  if (!ctx.daemon.running) return;
  try {
    const arg = rt.kind === 'embedded' ? { embedded: true } : { url: rt.url, token: await runtimeToken(ctx.secrets, rt.url) };
    ctx.status.setRuntime(await ctx.daemon.command<RuntimeStatus>(ServerCommand.selectRuntime, arg));
  } catch (err) {
    fail(ctx, 'Select runtime', err);
  }
}

/** Asks the daemon for the runtime's status and shows it in the status bar; `uri`: a file of
 * the project whose runtimes ([runtimes] in slipstream.toml) changed. */
export async function refreshStatus(ctx: CommandContext, uri?: string): Promise<RuntimeStatus | undefined> {
  try {
    const rt = await ctx.daemon.command<RuntimeStatus>(ServerCommand.runtimeStatus, uri ? { uri } : {});
    if (rt) ctx.status.setRuntime(rt);
    return rt;
  } catch (err) {
    ctx.log.warn(`runtimeStatus: ${(err as Error).message}`);
    return undefined;
  }
}

async function addRuntime(ctx: CommandContext): Promise<RuntimeEntry | undefined> {
  const url = await vscode.window.showInputBox({
    title: 'Add a Slipstream runtime (1/2)',
    prompt: 'The runtime URL (from `slipstream serve`)',
    placeHolder: 'http://127.0.0.1:8765',
    validateInput: (v) => (/^https?:\/\/\S+$/.test(v.trim()) ? undefined : 'A URL starting with http:// or https://'),
  });
  if (!url) return undefined;
  const name = await vscode.window.showInputBox({ title: 'Add a Slipstream runtime (2/2)', prompt: 'A short name', value: new URL(url.trim()).host });
  if (!name) return undefined;
  const entry = { name: name.trim(), url: url.trim() };
  const config = vscode.workspace.getConfiguration('slipstream');
  await config.update('runtimes', [...runtimes().filter((r) => r.name !== entry.name), entry], vscode.ConfigurationTarget.Global);
  await setToken(ctx, entry);
  return entry;
}

/** Slipstream: Select runtime: embedded, one of `slipstream.runtimes`, or a new one. */
export async function selectRuntime(ctx: CommandContext): Promise<void> {
  const current = selectedRuntime();
  const items: (vscode.QuickPickItem & { pick: string })[] = [
    { label: '$(vm) embedded', description: 'a local runtime the daemon starts', pick: EMBEDDED, picked: current.kind === 'embedded' },
    ...runtimes().map((r) => ({ label: `$(cloud) ${r.name}`, description: r.url, pick: r.name, picked: current.kind === 'remote' && current.name === r.name })),
    { label: '$(add) Add a runtime…', pick: '+' },
  ];
  const picked = await vscode.window.showQuickPick(items, { title: 'Slipstream: Select runtime' });
  if (!picked) return;
  const name = picked.pick === '+' ? (await addRuntime(ctx))?.name : picked.pick;
  if (!name) return;
  const before = vscode.workspace.getConfiguration('slipstream').get<string>('runtime');
  await setSelectedRuntime(name);
  // a changed setting reaches the daemon through onDidChangeConfiguration; the same one does not
  if (before === name) await applyRuntime(ctx);
}

/** Slipstream: Set runtime token: kept in SecretStorage, keyed by the runtime's URL. */
export async function setToken(ctx: CommandContext, entry?: RuntimeEntry): Promise<void> {
  let target = entry;
  // the https runtimes of slipstream.toml's [runtimes] too (an ssh one needs no token)
  const fromToml = (await tomlRuntimeEntries()).filter((r) => !r.url.startsWith('ssh://') && !runtimes().some((x) => x.url === r.url));
  if (!target) {
    const list = [...runtimes(), ...fromToml];
    const current = selectedRuntime();
    if (!list.length && current.kind === 'embedded') {
      void vscode.window.showInformationMessage('Slipstream: add a runtime first (Slipstream: Select runtime → Add a runtime…).');
      return;
    }
    const picked = await vscode.window.showQuickPick(
      (list.length ? list : [current as RuntimeEntry]).map((r) => ({ label: r.name, description: r.url, r })),
      { title: 'Slipstream: Set runtime token — for which runtime?' },
    );
    target = picked?.r;
  }
  if (!target) return;
  const token = await vscode.window.showInputBox({ title: `Token for ${target.name}`, prompt: 'The bearer token (stored in the editor\'s secret storage)', password: true, ignoreFocusOut: true });
  if (token === undefined) return;
  if (token) await ctx.secrets.store(tokenKey(target.url), token);
  else await ctx.secrets.delete(tokenKey(target.url));
  const current = selectedRuntime();
  if (!entry && current.kind === 'remote' && current.url === target.url) await applyRuntime(ctx);
  else if (fromToml.some((r) => r.url === target.url)) await ctx.daemon.restart(); // its token reaches the daemon in its environment
}

/** Slipstream: Show runtime status: the runtime, its GPUs, spend, and what to do next. */
export async function showStatus(ctx: CommandContext): Promise<void> {
  const rt = (ctx.daemon.running && (await refreshStatus(ctx))) || ctx.status.state.runtime;
  const python = ctx.daemon.interpreter;
  const info: vscode.QuickPickItem[] = [
    { label: 'Runtime', kind: vscode.QuickPickItemKind.Separator },
    { label: `$(server) ${rt ? (rt.kind === 'embedded' ? 'embedded (local)' : rt.url) : 'unknown'}`, description: rt ? (rt.connected ? 'connected' : 'not connected') : `daemon ${ctx.status.state.daemon}` },
    { label: `$(chip) ${formatGpus(rt?.gpus)}`, description: rt?.gpus?.map((g) => `${g.memoryGb} GB`).join(', ') },
    { label: `$(credit-card) ${formatCost(ctx.status.state.sessionSpendUsd)} since the editor opened`, description: rt ? `runtime total ${formatCost(rt.spendUsd)}` : undefined },
    { label: `$(symbol-function) ${rt?.endpoints ?? 0} endpoints deployed` },
    { label: `$(terminal) ${python ? `${python.path}` : 'no interpreter yet'}`, description: python ? `from ${python.source}` : undefined },
    { label: 'Actions', kind: vscode.QuickPickItemKind.Separator },
  ];
  const actions = [
    { label: '$(arrow-swap) Select runtime…', run: () => selectRuntime(ctx) },
    { label: '$(output) Open outputs', run: async () => ctx.panel.show(false) },
    { label: '$(debug-restart) Restart daemon', run: async () => void (await ctx.daemon.restart()) },
    { label: '$(list-flat) Show log', run: async () => ctx.log.show() },
  ];
  const picked = await vscode.window.showQuickPick<vscode.QuickPickItem & { run?: () => Promise<void> }>([...info, ...actions], {
    title: 'Slipstream: runtime status',
  });
  await picked?.run?.();
}

