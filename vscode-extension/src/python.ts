import { execFile } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { pythonSetting, SECTION } from './settings';

/** The interpreter that runs the daemon, and where it came from. */
export interface Interpreter {
  path: string;
  source: 'setting' | 'python-extension' | 'default';
}

/** Outcome of `python -c "import slipstream_daemon.server"`. */
export interface DaemonCheck {
  ok: boolean;
  /** missing: the interpreter does not run; not-installed: it runs but lacks slipstream. */
  reason?: 'missing' | 'not-installed';
  detail?: string;
}

export const PYTHON_EXTENSION_ID = 'ms-python.python';

/** The parts of the Python extension's API used here (it is optional, never a dependency). */
interface PythonApi {
  environments?: {
    getActiveEnvironmentPath(resource?: vscode.Uri): { id?: string; path: string } | undefined;
    resolveEnvironment?(env: unknown): Promise<{ executable?: { uri?: vscode.Uri } } | undefined>;
    onDidChangeActiveEnvironmentPath?: vscode.Event<unknown>;
  };
  settings?: {
    getExecutionDetails?(resource?: vscode.Uri): { execCommand?: string[] } | undefined;
    onDidChangeExecutionDetails?: vscode.Event<unknown>;
  };
}

/** Expands ~, ${workspaceFolder} and ${userHome}; resolves a relative path against the folder. */
export function expandPath(value: string, folder?: string): string {
  let p = value.replace(/\$\{userHome\}/g, os.homedir());
  if (folder) p = p.replace(/\$\{workspaceFolder\}/g, folder);
  if (p === '~' || p.startsWith('~/')) p = path.join(os.homedir(), p.slice(1));
  if (folder && !path.isAbsolute(p) && (p.includes('/') || p.includes('\\'))) p = path.join(folder, p);
  return p;
}

async function withTimeout<T>(promise: PromiseLike<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  try {
    return await Promise.race([Promise.resolve(promise), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The Python extension's API when it is installed (activating it), else undefined. */
export async function pythonApi(): Promise<PythonApi | undefined> {
  const ext = vscode.extensions.getExtension<PythonApi>(PYTHON_EXTENSION_ID);
  if (!ext) return undefined;
  try {
    return ext.isActive ? ext.exports : await withTimeout(ext.activate(), 15_000);
  } catch {
    return undefined;
  }
}

async function fromPythonExtension(scope?: vscode.Uri): Promise<string | undefined> {
  const api = await pythonApi();
  if (!api) return undefined;
  try {
    const active = api.environments?.getActiveEnvironmentPath(scope);
    if (active?.path) {
      const resolved = await withTimeout(api.environments?.resolveEnvironment?.(active) ?? Promise.resolve(undefined), 10_000);
      return resolved?.executable?.uri?.fsPath ?? active.path;
    }
    return api.settings?.getExecutionDetails?.(scope)?.execCommand?.[0];
  } catch {
    return undefined;
  }
}

/**
 * Finds the interpreter for the daemon: the `slipstream.python` setting, then the Python
 * extension's active interpreter (when that extension is installed), then `python3`.
 */
export async function findInterpreter(scope?: vscode.Uri): Promise<Interpreter> {
  const folder = (scope && vscode.workspace.getWorkspaceFolder(scope)) ?? vscode.workspace.workspaceFolders?.[0];
  const setting = pythonSetting(scope);
  if (setting) return { path: expandPath(setting, folder?.uri.fsPath), source: 'setting' };
  const fromExt = await fromPythonExtension(scope ?? folder?.uri);
  if (fromExt) return { path: fromExt, source: 'python-extension' };
  return { path: process.platform === 'win32' ? 'python' : 'python3', source: 'default' };
}

/**
 * What the extension needs in the interpreter: the daemon, and the runtime server for the
 * embedded local runtime (`pip install slipstream` alone is the SDK, without either).
 */
export const INSTALL_SPEC = 'slipstream[daemon,server]';

/** Runs `<python> -c "import slipstream_daemon.server"` (what the daemon imports at start:
 * pygls, libcst...) to see whether the daemon can start. */
export function checkDaemon(python: string, timeoutMs = 30_000): Promise<DaemonCheck> {
  return new Promise((resolve) => {
    execFile(python, ['-c', 'import slipstream_daemon.server'], { timeout: timeoutMs }, (err, _stdout, stderr) => {
      if (!err) return resolve({ ok: true });
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EACCES') {
        return resolve({ ok: false, reason: 'missing', detail: `${python}: ${code}` });
      }
      resolve({ ok: false, reason: 'not-installed', detail: String(stderr || err.message).trim() });
    });
  });
}

/** The one-line fix shown when the daemon cannot be imported. */
export function installHint(python: string): string {
  const quoted = /\s/.test(python) ? `"${python}"` : python;
  return `Install Slipstream into ${python}: ${quoted} -m pip install "${INSTALL_SPEC}"`;
}

/**
 * Tells the user the daemon cannot start with this interpreter, with a fix: install it (in a
 * terminal) or pick another interpreter. Resolves to the action taken.
 */
export async function explainMissingDaemon(
  interpreter: Interpreter,
  check: DaemonCheck,
  log: vscode.LogOutputChannel,
): Promise<'install' | 'picked' | 'log' | undefined> {
  const message =
    check.reason === 'missing'
      ? `Slipstream: the Python interpreter ${interpreter.path} (from ${interpreter.source}) was not found. ` +
        'Set "slipstream.python" or pick another interpreter.'
      : `Slipstream cannot start its daemon. ${installHint(interpreter.path)}`;
  log.error(`${message}${check.detail ? `\n${check.detail}` : ''}`);
  const actions = check.reason === 'missing' ? ['Pick interpreter', 'Show log'] : ['Install', 'Pick interpreter', 'Show log'];
  const choice = await vscode.window.showErrorMessage(message, ...actions);
  if (choice === 'Install') {
    const terminal = vscode.window.createTerminal('Slipstream: install');
    terminal.show();
    const quoted = /\s/.test(interpreter.path) ? `"${interpreter.path}"` : interpreter.path;
    terminal.sendText(`${quoted} -m pip install "${INSTALL_SPEC}"`);
    return 'install';
  }
  if (choice === 'Pick interpreter') return (await pickInterpreter()) ? 'picked' : undefined;
  if (choice === 'Show log') {
    log.show();
    return 'log';
  }
  return undefined;
}

/**
 * Lets the user choose an interpreter: the Python extension's picker when it is installed,
 * else a file dialog whose choice is saved as `slipstream.python`.
 */
export async function pickInterpreter(): Promise<boolean> {
  if (vscode.extensions.getExtension(PYTHON_EXTENSION_ID) && !pythonSetting()) {
    await vscode.commands.executeCommand('python.setInterpreter');
    return true;
  }
  const picked = await vscode.window.showOpenDialog({
    canSelectMany: false,
    canSelectFolders: false,
    openLabel: 'Use this Python',
    title: 'Python interpreter with Slipstream installed',
  });
  if (!picked?.[0]) return false;
  const target = vscode.workspace.workspaceFolders?.length
    ? vscode.ConfigurationTarget.Workspace
    : vscode.ConfigurationTarget.Global;
  await vscode.workspace.getConfiguration(SECTION).update('python', picked[0].fsPath, target);
  return true;
}

/** Fires when the Python extension's active interpreter changes (if it is installed). */
export async function onInterpreterChange(listener: () => void): Promise<vscode.Disposable | undefined> {
  const api = await pythonApi();
  const event = api?.environments?.onDidChangeActiveEnvironmentPath ?? api?.settings?.onDidChangeExecutionDetails;
  return event?.(() => listener());
}

/** How to launch the daemon with an interpreter: `<python> -m slipstream_daemon` over stdio. */
export function daemonCommand(python: string): { command: string; args: string[] } {
  return { command: python, args: ['-m', 'slipstream_daemon'] };
}

/**
 * The daemon's environment: the editor's, with the selected runtime's URL and token (the
 * embedded runtime clears any inherited ones, so the selection is what runs).
 */
export function daemonProcessEnv(base: NodeJS.ProcessEnv, runtimeEnv: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined) env[k] = v;
  delete env.SLIPSTREAM_RUNTIME_URL;
  delete env.SLIPSTREAM_TOKEN;
  return { ...env, PYTHONUNBUFFERED: '1', ...runtimeEnv };
}
