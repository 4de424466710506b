/**
 * "Slipstream: Connect to a GPU machine…" and "Slipstream: Disconnect…": a host from
 * ~/.ssh/config (or user@host) becomes a runtime of the workspace's project. The connect itself
 * is `slipstream connect ssh://HOST --json` run with the daemon's interpreter (it bootstraps the
 * host, installs Slipstream there, starts the runtime: docs/remote.md), its progress lines shown
 * in a notification; the runtime is then added under [runtimes.NAME] in slipstream.toml, which
 * routes endpoints to it (docs/runtimes.md). No token is involved: an ssh runtime's token is read
 * from the host over ssh; tokens of https runtimes live in SecretStorage (settings.ts).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';

// ---------------------------------------------------------------- ~/.ssh/config ---------

/** The concrete Host aliases of an ssh config text (patterns with * ? or ! are left out). */
export function sshConfigHosts(text: string): string[] {
  const hosts: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const m = /^\s*Host\s+(.+?)\s*$/i.exec(raw.replace(/#.*/, ''));
    if (!m) continue;
    for (const name of m[1].split(/\s+/)) {
      const clean = name.replace(/^"|"$/g, '');
      if (clean && !/[*?!]/.test(clean) && !hosts.includes(clean)) hosts.push(clean);
    }
  }
  return hosts;
}

/** `Include` lines of an ssh config text, as absolute paths (relative ones are under ~/.ssh). */
function includes(text: string, home: string): string[] {
  const out: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const m = /^\s*Include\s+(.+?)\s*$/i.exec(raw.replace(/#.*/, ''));
    if (!m) continue;
    for (const item of m[1].split(/\s+/)) {
      const p = item.replace(/^~(?=\/)/, home);
      out.push(path.isAbsolute(p) ? p : path.join(home, '.ssh', p));
    }
  }
  return out;
}

/** Files an Include pattern names: a plain path, or a folder/glob with * in the last part. */
function expand(pattern: string): string[] {
  if (!/[*?]/.test(path.basename(pattern))) return [pattern];
  const dir = path.dirname(pattern);
  const re = new RegExp(`^${path.basename(pattern).replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  try {
    return fs.readdirSync(dir).filter((f) => re.test(f)).sort().map((f) => path.join(dir, f));
  } catch {
    return [];
  }
}

/** The Host aliases of the user's ~/.ssh/config (or the file SLIPSTREAM_SSH_CONFIG names, as
 * `slipstream connect` uses it) and the files it includes. */
export function readSshHosts(home: string = os.homedir(), config: string | undefined = process.env.SLIPSTREAM_SSH_CONFIG): string[] {
  const seen = new Set<string>();
  const hosts: string[] = [];
  const visit = (file: string, depth: number): void => {
    if (depth > 4 || seen.has(file)) return;
    seen.add(file);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      return;
    }
    for (const inc of includes(text, home)) for (const f of expand(inc)) visit(f, depth + 1);
    for (const h of sshConfigHosts(text)) if (!hosts.includes(h)) hosts.push(h);
  };
  visit(config || path.join(home, '.ssh', 'config'), 0);
  return hosts;
}

// ---------------------------------------------------------------- slipstream.toml -------

/** A runtime name for a host: "me@gpu-box:2222" -> "gpu-box" (letters, digits, - _ .). */
export function runtimeName(host: string): string {
  const bare = host.replace(/^ssh:\/\//, '').replace(/^[^@]*@/, '').replace(/:\d+$/, '');
  return bare.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^[-_.]+/, '').slice(0, 40) || 'gpu';
}

/** [runtimes.NAME] tables of a slipstream.toml text, in order, with their url. */
export function tomlRuntimes(text: string): { name: string; url: string }[] {
  const out: { name: string; url: string }[] = [];
  let current: { name: string; url: string } | undefined;
  for (const line of text.split(/\r?\n/)) {
    const header = /^\s*\[\s*runtimes\.("?)([A-Za-z0-9_.-]+)\1\s*\]\s*(#.*)?$/.exec(line);
    if (header) {
      current = { name: header[2], url: '' };
      out.push(current);
      continue;
    }
    if (/^\s*\[/.test(line)) current = undefined;
    const url = /^\s*url\s*=\s*"([^"]*)"/.exec(line);
    if (current && url) current.url = url[1];
  }
  return out;
}

/** The text without the [runtimes.NAME] table (its header to the next table). */
export function tomlRemoveRuntime(text: string, name: string): string {
  const lines = text.split('\n');
  const out: string[] = [];
  let skipping = false;
  for (const line of lines) {
    const header = /^\s*\[\s*([^\]]+?)\s*\]/.exec(line);
    if (header) skipping = header[1].replace(/"/g, '') === `runtimes.${name}`;
    if (!skipping) out.push(line);
  }
  return out.join('\n').replace(/\n{3,}/g, '\n\n');
}

/** The text with [runtimes.NAME] set to this url and declared GPUs (replacing one of that name). */
export function tomlAddRuntime(text: string, name: string, url: string, gpus: string[]): string {
  const rest = tomlRemoveRuntime(text, name).replace(/\s*$/, '');
  const gpuLine = gpus.length ? `\ngpus = [${gpus.map((g) => JSON.stringify(g)).join(', ')}]  # what it reported; used while it is offline` : '';
  return `${rest ? `${rest}\n\n` : ''}[runtimes.${name}]\nurl = ${JSON.stringify(url)}${gpuLine}\n`;
}

/** The project folder a command acts on: the one holding slipstream.toml above the active
 * file, else the first workspace folder. */
export function projectFolder(): string | undefined {
  const doc = vscode.window.activeTextEditor?.document;
  const folders = vscode.workspace.workspaceFolders ?? [];
  if (doc && doc.uri.scheme === 'file') {
    let dir = path.dirname(doc.uri.fsPath);
    const top = folders.find((f) => doc.uri.fsPath.startsWith(f.uri.fsPath + path.sep))?.uri.fsPath;
    for (;;) {
      if (fs.existsSync(path.join(dir, 'slipstream.toml'))) return dir;
      if (dir === top || path.dirname(dir) === dir) break;
      dir = path.dirname(dir);
    }
  }
  return folders[0]?.uri.fsPath;
}

// ---------------------------------------------------------------- running the CLI -------

/** What `slipstream connect --json` prints last. */
export interface Connected {
  host: string;
  url: string;
  version: string;
  gpus: string[];
  rttMs: number;
}

/** Runs `python -m slipstream ARGS`; each stderr line goes to `progress`; the last stdout line
 * that is JSON comes back. Rejects with the CLI's own message when it exits non-zero. */
export function runCli(python: string, args: string[], progress: (line: string) => void, token?: vscode.CancellationToken, cwd?: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, ['-m', 'slipstream', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let partial = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      partial += d.toString();
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) progress(line.replace(/^slipstream:\s*/, '').trim());
    });
    token?.onCancellationRequested(() => child.kill('SIGTERM'));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) {
        const msg = err.trim().split('\n').filter(Boolean).pop()?.replace(/^slipstream:\s*/, '') ?? `exit code ${code}`;
        reject(new Error(token?.isCancellationRequested ? 'cancelled' : msg));
        return;
      }
      const json = out.trim().split('\n').reverse().find((l) => l.startsWith('{'));
      try {
        resolve(json ? (JSON.parse(json) as Record<string, unknown>) : {});
      } catch {
        resolve({});
      }
    });
  });
}

/** What the connect commands need from the extension. */
export interface ConnectContext {
  python(): string | undefined;
  log: vscode.LogOutputChannel;
  /** The routing changed (slipstream.toml written): the daemon reads it again. */
  changed(folder: string): Promise<void>;
}

const ADD_HOST = '$(add) user@host…';

/** Slipstream: Connect to a GPU machine… */
export async function connectMachine(ctx: ConnectContext, preset?: string): Promise<Connected | undefined> {
  const python = ctx.python();
  if (!python) {
    void vscode.window.showErrorMessage('Slipstream: no Python interpreter with Slipstream yet (see the Slipstream log).');
    return undefined;
  }
  const folder = projectFolder();
  if (!folder) {
    void vscode.window.showErrorMessage('Slipstream: open the project folder first: the machine is added to its slipstream.toml.');
    return undefined;
  }
  let host = preset;
  if (!host) {
    const items = [...readSshHosts().map((h) => ({ label: `$(remote) ${h}`, description: '~/.ssh/config', host: h })), { label: ADD_HOST, description: 'any machine you can ssh into', host: '' }];
    const picked = await vscode.window.showQuickPick(items, { title: 'Slipstream: Connect to a GPU machine', placeHolder: 'A host from ~/.ssh/config, or user@host' });
    if (!picked) return undefined;
    host = picked.host;
    if (!host) {
      host = (await vscode.window.showInputBox({
        title: 'Slipstream: Connect to a GPU machine',
        prompt: 'user@host or user@host:port (ssh must reach it with a key, without a password prompt)',
        placeHolder: 'me@gpu-box',
        validateInput: (v) => (/^([^@\s]+@)?[A-Za-z0-9_.[\]:-]+$/.test(v.trim()) ? undefined : 'user@host, user@host:port or an ssh config alias'),
      }))?.trim();
      if (!host) return undefined;
    }
  }
  const url = `ssh://${host.replace(/^ssh:\/\//, '')}`;
  const name = runtimeName(host);
  try {
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Slipstream: connecting to ${host}`, cancellable: true },
      async (progress, token) => {
        progress.report({ message: 'opening the ssh connection…' });
        return runCli(python, ['connect', url, '--json'], (line) => {
          ctx.log.info(`connect ${host}: ${line}`);
          progress.report({ message: line });
        }, token, folder);
      },
    );
    const connected: Connected = {
      host,
      url,
      version: String(result.version ?? ''),
      gpus: Array.isArray(result.gpus) ? result.gpus.map(String) : [],
      rttMs: Number(result.rtt_ms ?? 0),
    };
    const toml = path.join(folder, 'slipstream.toml');
    const before = fs.existsSync(toml) ? fs.readFileSync(toml, 'utf8') : '';
    fs.writeFileSync(toml, tomlAddRuntime(before, name, url, connected.gpus));
    ctx.log.info(`connected ${host}: Slipstream ${connected.version}, GPUs ${connected.gpus.join(', ') || 'none'}, ${connected.rttMs} ms; added [runtimes.${name}] to ${toml}`);
    await ctx.changed(folder);
    void vscode.window.showInformationMessage(
      `Slipstream: connected to ${host} (${connected.gpus.length ? connected.gpus.join(', ') : 'no GPU'}, ${connected.rttMs.toFixed(1)} ms); added as runtime "${name}" in slipstream.toml.`,
    );
    return connected;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    ctx.log.error(`connect ${host}: ${message}`);
    if (message !== 'cancelled') void vscode.window.showErrorMessage(`Slipstream: could not connect to ${host}: ${message}`);
    return undefined;
  }
}

/** Slipstream: Disconnect…: closes the ssh connection (optionally stopping the runtime) and
 * takes the runtime out of slipstream.toml. */
export async function disconnectMachine(ctx: ConnectContext, preset?: string): Promise<boolean> {
  const python = ctx.python();
  const folder = projectFolder();
  if (!python || !folder) return false;
  const toml = path.join(folder, 'slipstream.toml');
  const text = fs.existsSync(toml) ? fs.readFileSync(toml, 'utf8') : '';
  const ssh = tomlRuntimes(text).filter((r) => r.url.startsWith('ssh://'));
  let name = preset;
  if (!name) {
    if (!ssh.length) {
      void vscode.window.showInformationMessage('Slipstream: no ssh runtime in slipstream.toml to disconnect.');
      return false;
    }
    name = (await vscode.window.showQuickPick(ssh.map((r) => ({ label: r.name, description: r.url, name: r.name })), { title: 'Slipstream: Disconnect' }))?.name;
    if (!name) return false;
  }
  const entry = ssh.find((r) => r.name === name);
  if (!entry) return false;
  const how = preset
    ? 'Disconnect'
    : (await vscode.window.showQuickPick(['Disconnect', 'Disconnect and stop its runtime'], { title: `Slipstream: Disconnect ${name}`, placeHolder: 'The runtime keeps running on the host unless stopped' }));
  if (!how) return false;
  try {
    await runCli(python, ['disconnect', entry.url, ...(how.includes('stop') ? ['--stop'] : [])], (line) => ctx.log.info(`disconnect ${name}: ${line}`), undefined, folder);
  } catch (err) {
    ctx.log.warn(`disconnect ${name}: ${(err as Error).message}`);
  }
  fs.writeFileSync(toml, tomlRemoveRuntime(text, name));
  await ctx.changed(folder);
  void vscode.window.showInformationMessage(`Slipstream: disconnected ${name} and removed it from slipstream.toml.`);
  return true;
}
