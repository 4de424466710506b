import './register';
import { strict as assert } from 'node:assert';
import { beforeEach, describe, it } from 'node:test';
import { OutputsPanel } from '../../src/panel';
import type { RunResult } from '../../src/protocol';
import * as vscode from './fake-vscode';

const extensionUri = vscode.Uri.file('/ext');

function started(runId = 'run-1', endpoint = 'gradient') {
  return { runId, uri: 'file:///w/hello.py', endpoint, method: null, gpu: 'H100', startedAt: 1_700_000_000 };
}

function result(over: Partial<RunResult> = {}): RunResult {
  return {
    runId: 'run-1', uri: 'file:///w/hello.py', endpoint: 'gradient', method: null, gpu: 'H100', status: 'ok',
    durationS: 0.5, costUsd: 0.00058, images: [{ path: '/cache/slipstream/images/run-1/0.png', thumbnail: 'data:image/png;base64,AAAA', width: 64, height: 32 }],
    logs: [], ...over,
  };
}

function newPanel(): { panel: OutputsPanel; fake: () => vscode.FakeWebviewPanel } {
  const panel = new OutputsPanel(extensionUri as never);
  return { panel, fake: () => vscode.panels[vscode.panels.length - 1] };
}

const lastCardsHtml = (p: vscode.FakeWebviewPanel) => (p.posted.at(-1) as { html: string }).html;
const flush = () => new Promise((r) => setImmediate(r));

describe('outputs panel', () => {
  beforeEach(() => vscode.reset());

  it('reveals itself with a pending card when a run starts, and fills the card with the result', () => {
    const { panel, fake } = newPanel();
    panel.runStarted(started());
    assert.equal(vscode.panels.length, 1, 'the panel opened');
    assert.match(fake().webview.html, /data-run="run-1"/);
    assert.match(fake().webview.html, /running…/);
    assert.equal(panel.history[0].startedAt, 1_700_000_000_000, 'seconds since the epoch become milliseconds');
    panel.runLog({ runId: 'run-1', stream: 'stdout', text: 'denoising\n' });
    assert.match(lastCardsHtml(fake()), /denoising/);
    panel.runResult(result());
    assert.equal(panel.history[0].status, 'ok');
    assert.match(fake().webview.html, /<img src="data:image\/png;base64,AAAA"/);
    assert.match(fake().webview.html, /data-full="https:\/\/webview\.test\/cache\/slipstream\/images\/run-1\/0\.png"/);
  });

  it('keeps newest first', () => {
    const { panel } = newPanel();
    panel.runStarted(started('a', 'greet'));
    panel.runStarted(started('b', 'gradient'));
    assert.deepEqual(panel.history.map((c) => c.runId), ['b', 'a']);
  });

  it('limits local resources to the media folder and the daemon image folders, with scripts on', () => {
    const { panel, fake } = newPanel();
    panel.runStarted(started());
    assert.deepEqual(fake().webview.options.localResourceRoots!.map((u) => u.fsPath), ['/ext/media']);
    panel.runResult(result());
    assert.deepEqual(fake().webview.options.localResourceRoots!.map((u) => u.fsPath), ['/ext/media', '/cache/slipstream/images/run-1']);
    assert.equal(fake().webview.options.enableScripts, true);
    assert.match(fake().webview.html, /Content-Security-Policy" content="default-src &#39;none&#39;/);
  });

  it('keeps history while hidden and re-renders it when the panel becomes visible', () => {
    const { panel, fake } = newPanel();
    panel.runStarted(started());
    const p = fake();
    p.setVisible(false);
    const postedBefore = p.posted.length;
    panel.runResult(result({ images: [], text: 'done while hidden' }));
    assert.equal(p.posted.length, postedBefore, 'nothing is posted to a hidden webview');
    assert.doesNotMatch(p.webview.html, /done while hidden/);
    p.setVisible(true);
    assert.match(p.webview.html, /done while hidden/);
  });

  it('answers the webview script\'s ready message with the cards (a reloaded webview)', async () => {
    const { panel, fake } = newPanel();
    panel.runStarted(started());
    panel.runResult(result({ images: [], text: 'hello' }));
    fake().posted.length = 0;
    fake().received.fire({ type: 'ready' });
    await flush();
    assert.match(lastCardsHtml(fake()), /hello/);
  });

  it('re-creates a closed panel from history', () => {
    const { panel, fake } = newPanel();
    panel.runStarted(started());
    panel.runResult(result({ images: [], text: 'kept' }));
    fake().dispose();
    panel.show(false);
    assert.equal(vscode.panels.length, 2);
    assert.match(fake().webview.html, /kept/);
  });

  it('opens a traceback frame at its line when the webview asks (openFrame)', async () => {
    const { panel } = newPanel();
    panel.runStarted(started());
    panel.runResult(result({
      status: 'error', images: [],
      error: { type: 'ValueError', message: 'bad', traceback: '', frames: [{ file: '/w/hello.py', line: 12, name: 'gradient' }] },
    }));
    await panel.handleMessage({ type: 'openFrame', runId: 'run-1', index: 0 });
    const open = vscode.calls.find((c) => c[0] === 'openTextDocument')!;
    assert.equal((open[1] as vscode.Uri).fsPath, '/w/hello.py');
    const show = vscode.calls.find((c) => c[0] === 'showTextDocument')!;
    const options = show[2] as { selection: vscode.Range; viewColumn: number };
    assert.equal(options.selection.start.line, 11, 'line 12 is zero-based 11');
    assert.equal(options.selection.start.character, 0);
    assert.equal(options.viewColumn, vscode.ViewColumn.One);
  });

  it('ignores frames and images the history does not hold: the webview never names a path', async () => {
    const { panel } = newPanel();
    panel.runStarted(started());
    panel.runResult(result());
    await panel.handleMessage({ type: 'openFrame', runId: 'run-1', index: 5 });
    await panel.handleMessage({ type: 'openFrame', runId: 'nope', index: 0 });
    await panel.handleMessage({ type: 'saveImage', runId: 'run-1', index: 9 });
    await panel.handleMessage({ type: 'saveImage', path: '/etc/passwd' } as never);
    assert.deepEqual(vscode.calls.filter((c) => ['openTextDocument', 'showTextDocument', 'showSaveDialog', 'fs.copy'].includes(c[0])), []);
  });

  it('saves an image where the user chooses (saveImage)', async () => {
    vscode.workspace.workspaceFolders = [{ uri: vscode.Uri.file('/w'), name: 'w', index: 0 }];
    vscode.answers.showSaveDialog = () => vscode.Uri.file('/w/out.png');
    const { panel } = newPanel();
    panel.runStarted(started());
    panel.runResult(result());
    await panel.handleMessage({ type: 'saveImage', runId: 'run-1', index: 0 });
    const dialog = vscode.calls.find((c) => c[0] === 'showSaveDialog')!;
    assert.equal((dialog[1] as { defaultUri: vscode.Uri }).defaultUri.fsPath, '/w/gradient-run-1-1.png');
    const copy = vscode.calls.find((c) => c[0] === 'fs.copy')!;
    assert.equal((copy[1] as vscode.Uri).fsPath, '/cache/slipstream/images/run-1/0.png');
    assert.equal((copy[2] as vscode.Uri).fsPath, '/w/out.png');
    assert.ok(vscode.calls.some((c) => c[0] === 'showInformationMessage' && /Saved \/w\/out\.png/.test(String(c[1]))));
  });

  it('does nothing when the save dialog is cancelled', async () => {
    const { panel } = newPanel();
    panel.runStarted(started());
    panel.runResult(result());
    await panel.handleMessage({ type: 'saveImage', runId: 'run-1', index: 0 });
    assert.ok(!vscode.calls.some((c) => c[0] === 'fs.copy'));
  });

  it('adds a card for a result whose start it missed', () => {
    const { panel } = newPanel();
    panel.runResult(result({ runId: 'late', images: [], text: 'x' }));
    assert.equal(panel.history[0].runId, 'late');
    assert.equal(panel.history[0].status, 'ok');
  });

  it('runs Rebuild kept model for the endpoint and keys a card\'s warning names', async () => {
    const { panel } = newPanel();
    panel.runStarted(started('run-1', 'Chat'));
    const warning = { kind: 'kept-stale' as const, message: "kept 'gpt' (model.GPT) still runs its old code", endpoint: 'Chat', keys: ["'gpt'"] };
    panel.runResult(result({ endpoint: 'Chat', images: [], warnings: [warning] }));
    await panel.handleMessage({ type: 'rebuildKept', runId: 'run-1', index: 0 });
    assert.deepEqual(
      vscode.calls.filter((c) => c[0] === 'command:slipstream.rebuildKept'),
      [['command:slipstream.rebuildKept', { uri: 'file:///w/hello.py', endpoint: 'Chat', keys: ["'gpt'"] }]],
    );
    await panel.handleMessage({ type: 'rebuildKept', runId: 'run-1', index: 3 });
    await panel.handleMessage({ type: 'rebuildKept', runId: 'nope', index: 0 });
    assert.equal(vscode.calls.filter((c) => c[0] === 'command:slipstream.rebuildKept').length, 1, 'nothing for a warning it does not have');
  });
});
