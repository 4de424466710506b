import './register';
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { beforeEach, describe, it } from 'node:test';
import { checkDaemon, daemonCommand, daemonProcessEnv, expandPath, explainMissingDaemon, findInterpreter, installHint } from '../../src/python';
import { daemonEnv, selectedRuntime, tokenKey } from '../../src/settings';
import * as vscode from './fake-vscode';

function pythonExtension(interpreter: string, options: { active?: boolean } = {}) {
  const api = {
    environments: {
      getActiveEnvironmentPath: () => ({ id: 'x', path: interpreter }),
      resolveEnvironment: async () => ({ executable: { uri: vscode.Uri.file(interpreter) } }),
    },
  };
  return { isActive: options.active ?? false, exports: api, activate: async () => api };
}

/** A fake interpreter: a shell script that exits with the given code and stderr. */
function fakePython(code: number, stderr = ''): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slipstream-py-'));
  const file = path.join(dir, 'python');
  fs.writeFileSync(file, `#!/bin/sh\necho '${stderr}' >&2\nexit ${code}\n`, { mode: 0o755 });
  return file;
}

const log = () => vscode.window.createOutputChannel('test') as unknown as import('vscode').LogOutputChannel;

describe('python interpreter discovery', () => {
  beforeEach(() => vscode.reset());

  it('uses the slipstream.python setting first, even with the Python extension installed', async () => {
    vscode.settings['slipstream.python'] = '/opt/venv/bin/python';
    vscode.installedExtensions['ms-python.python'] = pythonExtension('/from/extension/python');
    assert.deepEqual(await findInterpreter(), { path: '/opt/venv/bin/python', source: 'setting' });
  });

  it('resolves ${workspaceFolder} and relative paths in the setting against the folder', async () => {
    vscode.workspace.workspaceFolders = [{ uri: vscode.Uri.file('/w'), name: 'w', index: 0 }];
    vscode.settings['slipstream.python'] = '${workspaceFolder}/.venv/bin/python';
    assert.equal((await findInterpreter()).path, '/w/.venv/bin/python');
    vscode.settings['slipstream.python'] = '.venv/bin/python';
    assert.equal((await findInterpreter()).path, '/w/.venv/bin/python');
    assert.equal(expandPath('~/py/bin/python'), path.join(os.homedir(), 'py/bin/python'));
    assert.equal(expandPath('python3.12', '/w'), 'python3.12', 'a bare command stays on PATH');
  });

  it('then asks the Python extension for its active interpreter, when that extension is installed', async () => {
    vscode.installedExtensions['ms-python.python'] = pythonExtension('/from/extension/python');
    assert.deepEqual(await findInterpreter(), { path: '/from/extension/python', source: 'python-extension' });
  });

  it('falls back to python3 without a setting or the Python extension', async () => {
    assert.deepEqual(await findInterpreter(), { path: 'python3', source: 'default' });
  });

  it('falls back to python3 when the Python extension fails to activate', async () => {
    vscode.installedExtensions['ms-python.python'] = { isActive: false, activate: async () => { throw new Error('offline'); } };
    assert.equal((await findInterpreter()).source, 'default');
  });
});

describe('daemon check', () => {
  beforeEach(() => vscode.reset());

  it('passes when the interpreter imports slipstream_daemon', async () => {
    assert.deepEqual(await checkDaemon(fakePython(0)), { ok: true });
  });

  it('reports not-installed with the import error when the module is missing', async () => {
    const check = await checkDaemon(fakePython(1, "ModuleNotFoundError: No module named 'slipstream_daemon'"));
    assert.equal(check.ok, false);
    assert.equal(check.reason, 'not-installed');
    assert.match(check.detail!, /No module named/);
  });

  it('reports a missing interpreter', async () => {
    const check = await checkDaemon('/nonexistent/bin/python');
    assert.deepEqual({ ok: check.ok, reason: check.reason }, { ok: false, reason: 'missing' });
  });

  it('tells the user how to install, with buttons to install or pick another interpreter', async () => {
    vscode.answers.showErrorMessage = 'Install';
    const action = await explainMissingDaemon({ path: '/venv/bin/python', source: 'setting' }, { ok: false, reason: 'not-installed' }, log());
    const shown = vscode.calls.find((c) => c[0] === 'showErrorMessage')!;
    assert.ok(String(shown[1]).includes('Install Slipstream into /venv/bin/python: /venv/bin/python -m pip install "slipstream[daemon,server]"'), String(shown[1]));
    assert.deepEqual(shown.slice(2), ['Install', 'Pick interpreter', 'Show log']);
    assert.equal(action, 'install');
    assert.ok(vscode.calls.some((c) => c[0] === 'terminal' && c[2] === '/venv/bin/python -m pip install "slipstream[daemon,server]"'));
    assert.equal(installHint('/my env/python'), 'Install Slipstream into /my env/python: "/my env/python" -m pip install "slipstream[daemon,server]"');
  });

  it('picks another interpreter with a file dialog when the Python extension is absent', async () => {
    vscode.workspace.workspaceFolders = [{ uri: vscode.Uri.file('/w'), name: 'w', index: 0 }];
    vscode.answers.showErrorMessage = 'Pick interpreter';
    vscode.answers.showOpenDialog = [vscode.Uri.file('/other/python')];
    const action = await explainMissingDaemon({ path: 'python3', source: 'default' }, { ok: false, reason: 'not-installed' }, log());
    assert.equal(action, 'picked');
    assert.deepEqual(vscode.calls.find((c) => c[0] === 'updateSetting')!.slice(1), ['slipstream.python', '/other/python', vscode.ConfigurationTarget.Workspace]);
  });

  it('uses the Python extension\'s picker when it is installed', async () => {
    vscode.installedExtensions['ms-python.python'] = pythonExtension('/x');
    vscode.answers.showErrorMessage = 'Pick interpreter';
    await explainMissingDaemon({ path: '/x', source: 'python-extension' }, { ok: false, reason: 'not-installed' }, log());
    assert.ok(vscode.calls.some((c) => c[0] === 'command:python.setInterpreter'));
  });
});

describe('daemon launch', () => {
  beforeEach(() => vscode.reset());

  it('runs `<python> -m slipstream_daemon`', () => {
    assert.deepEqual(daemonCommand('/venv/bin/python'), { command: '/venv/bin/python', args: ['-m', 'slipstream_daemon'] });
  });

  it('passes the selected runtime URL and its token from secret storage', async () => {
    vscode.settings['slipstream.runtimes'] = [{ name: 'lab', url: 'http://10.0.0.5:8765' }, { bad: true }];
    vscode.settings['slipstream.runtime'] = 'lab';
    const secrets = new Map([[tokenKey('http://10.0.0.5:8765'), 's3cret']]);
    const storage = { get: async (k: string) => secrets.get(k) } as unknown as import('vscode').SecretStorage;
    assert.deepEqual(selectedRuntime(), { kind: 'remote', name: 'lab', url: 'http://10.0.0.5:8765' });
    const env = daemonProcessEnv({ PATH: '/bin', SLIPSTREAM_TOKEN: 'inherited' }, await daemonEnv(storage));
    assert.equal(env.SLIPSTREAM_RUNTIME_URL, 'http://10.0.0.5:8765');
    assert.equal(env.SLIPSTREAM_TOKEN, 's3cret');
    assert.equal(env.PATH, '/bin');
  });

  it('clears inherited runtime variables on the embedded runtime', async () => {
    const storage = { get: async () => undefined } as unknown as import('vscode').SecretStorage;
    const env = daemonProcessEnv({ SLIPSTREAM_RUNTIME_URL: 'http://x', SLIPSTREAM_TOKEN: 't' }, await daemonEnv(storage));
    assert.equal(env.SLIPSTREAM_RUNTIME_URL, undefined);
    assert.equal(env.SLIPSTREAM_TOKEN, undefined);
  });
});
