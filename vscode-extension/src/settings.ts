import * as vscode from 'vscode';
import { tomlRuntimes } from './connect';

/** A remote runtime the user listed in `slipstream.runtimes`. */
export interface RuntimeEntry {
  name: string;
  url: string;
}

/** The runtime to use: the embedded local one, or a named remote one. */
export type SelectedRuntime = { kind: 'embedded' } | ({ kind: 'remote' } & RuntimeEntry);

export const SECTION = 'slipstream';
export const EMBEDDED = 'embedded';

/** `slipstream.python`, trimmed; empty when unset. */
export function pythonSetting(scope?: vscode.Uri): string {
  return (vscode.workspace.getConfiguration(SECTION, scope).get<string>('python') ?? '').trim();
}

/** `slipstream.runtimes`, with malformed entries dropped. */
export function runtimes(): RuntimeEntry[] {
  const raw = vscode.workspace.getConfiguration(SECTION).get<unknown[]>('runtimes') ?? [];
  return raw.filter(
    (r): r is RuntimeEntry =>
      typeof r === 'object' && r !== null && typeof (r as RuntimeEntry).name === 'string' &&
      typeof (r as RuntimeEntry).url === 'string' && (r as RuntimeEntry).url.length > 0,
  );
}

/**
 * The selected runtime (`slipstream.runtime`): "embedded", a name from `slipstream.runtimes`,
 * or a URL typed directly. An unknown name falls back to embedded.
 */
export function selectedRuntime(): SelectedRuntime {
  const name = (vscode.workspace.getConfiguration(SECTION).get<string>('runtime') ?? EMBEDDED).trim();
  if (!name || name === EMBEDDED) return { kind: 'embedded' };
  const entry = runtimes().find((r) => r.name === name);
  if (entry) return { kind: 'remote', ...entry };
  if (/^(https?|ssh):\/\//.test(name)) return { kind: 'remote', name, url: name };
  return { kind: 'embedded' };
}

/** Stores the selected runtime name in the workspace settings (user settings without a folder). */
export async function setSelectedRuntime(name: string): Promise<void> {
  const target = vscode.workspace.workspaceFolders?.length
    ? vscode.ConfigurationTarget.Workspace
    : vscode.ConfigurationTarget.Global;
  await vscode.workspace.getConfiguration(SECTION).update('runtime', name, target);
}

/** The SecretStorage key for a runtime's bearer token (by URL, so renames keep it). */
export function tokenKey(url: string): string {
  return `slipstream.token:${url.replace(/\/+$/, '')}`;
}

/** The token for a runtime, from SecretStorage; undefined when none was set. */
export async function runtimeToken(secrets: vscode.SecretStorage, url: string): Promise<string | undefined> {
  return (await secrets.get(tokenKey(url))) || undefined;
}

/** Environment for the daemon process: the selected runtime's URL and token, if remote; and
 * the tokens of the https runtimes the workspace's slipstream.toml names under [runtimes], as
 * SLIPSTREAM_TOKEN_<NAME> (sdk/routing.py reads them there; docs/runtimes.md). */
export async function daemonEnv(secrets: vscode.SecretStorage): Promise<Record<string, string>> {
  const env: Record<string, string> = {};
  for (const rt of await tomlRuntimeEntries()) {
    const token = rt.url.startsWith('ssh://') ? undefined : await runtimeToken(secrets, rt.url);
    if (token) env[`SLIPSTREAM_TOKEN_${rt.name.replace(/[^A-Za-z0-9]/g, '_').toUpperCase()}`] = token;
  }
  const rt = selectedRuntime();
  if (rt.kind === 'embedded') return env;
  env.SLIPSTREAM_RUNTIME_URL = rt.url;
  const token = await runtimeToken(secrets, rt.url);
  if (token) env.SLIPSTREAM_TOKEN = token;
  return env;
}

/** The [runtimes.NAME] tables of the workspace folders' slipstream.toml files (remote ones). */
export async function tomlRuntimeEntries(): Promise<RuntimeEntry[]> {
  const out: RuntimeEntry[] = [];
  for (const folder of vscode.workspace.workspaceFolders ?? []) {
    try {
      const bytes = await vscode.workspace.fs.readFile(vscode.Uri.joinPath(folder.uri, 'slipstream.toml'));
      for (const r of tomlRuntimes(Buffer.from(bytes).toString('utf8'))) if (r.url && r.url !== 'embedded') out.push(r);
    } catch {
      // no slipstream.toml there
    }
  }
  return out;
}
