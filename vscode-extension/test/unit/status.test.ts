import './register';
import { strict as assert } from 'node:assert';
import { beforeEach, describe, it } from 'node:test';
import type { RunResult, RuntimeStatus } from '../../src/protocol';
import { formatGpus, StatusBar, statusText } from '../../src/status';
import * as vscode from './fake-vscode';

const embedded: RuntimeStatus = { url: 'http://127.0.0.1:8765', kind: 'embedded', connected: true, gpus: [], spendUsd: 0, endpoints: 2 };
const remote: RuntimeStatus = {
  url: 'https://gpu.example.com:8765/', kind: 'remote', connected: true, spendUsd: 1.5, endpoints: 3,
  gpus: [{ name: 'H100', memoryGb: 80, count: 8 }, { name: 'L4', memoryGb: 24, count: 1 }],
};

function run(costUsd: number): RunResult {
  return { runId: String(costUsd), uri: '', endpoint: 'e', gpu: 'H100', status: 'ok', durationS: 1, costUsd, images: [], logs: [] };
}

describe('status bar', () => {
  beforeEach(() => vscode.reset());

  it('reads "embedded · CPU · $0.0000" on the embedded runtime without GPUs', () => {
    assert.equal(
      statusText({ daemon: 'running', runtime: embedded, selected: { kind: 'embedded' }, sessionSpendUsd: 0 }),
      '$(rocket) Slipstream: embedded · CPU · $0.0000',
    );
  });

  it('shows a remote runtime by URL with its GPUs', () => {
    assert.equal(
      statusText({ daemon: 'running', runtime: remote, selected: { kind: 'remote', name: 'lab', url: remote.url! }, sessionSpendUsd: 0.0123 }),
      '$(rocket) Slipstream: gpu.example.com:8765 · 8×H100, L4 · $0.0123',
    );
    assert.equal(formatGpus([{ name: 'H100', memoryGb: 80, count: 1 }]), 'H100');
  });

  it('says when the daemon is starting, failed, or the runtime is offline', () => {
    const base = { selected: { kind: 'embedded' as const }, sessionSpendUsd: 0 };
    assert.equal(statusText({ ...base, daemon: 'starting' }), '$(sync~spin) Slipstream: starting…');
    assert.equal(statusText({ ...base, daemon: 'failed' }), '$(error) Slipstream: daemon not running');
    assert.equal(
      statusText({ ...base, daemon: 'running', runtime: { ...embedded, connected: false } }),
      '$(rocket) Slipstream: embedded · idle · $0.0000',
    );
    assert.equal(
      statusText({ ...base, daemon: 'running', runtime: { ...remote, connected: false }, selected: { kind: 'remote', name: 'lab', url: remote.url! } }),
      '$(debug-disconnect) Slipstream: gpu.example.com:8765 · offline · $0.0000',
    );
  });

  it('sums the cost of runs since the editor opened, and opens the status on click', () => {
    const bar = new StatusBar({ kind: 'embedded' });
    const item = vscode.statusItems[0];
    assert.equal(item.command, 'slipstream.showStatus');
    assert.equal(item.text, '$(sync~spin) Slipstream: starting…');
    bar.setRuntime(embedded);
    bar.addRun(run(0.0031));
    bar.addRun(run(0.0012));
    assert.equal(item.text, '$(rocket) Slipstream: embedded · CPU · $0.0043');
    assert.match(String(item.tooltip), /Spend since the editor opened: \$0\.0043/);
    bar.setRuntime(remote);
    assert.equal(item.text, '$(rocket) Slipstream: gpu.example.com:8765 · 8×H100, L4 · $0.0043');
  });
});
