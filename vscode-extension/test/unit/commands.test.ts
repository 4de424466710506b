import './register';
import { strict as assert } from 'node:assert';
import { beforeEach, describe, it } from 'node:test';
import { runEndpoint, swapModel, type CommandContext } from '../../src/commands';
import * as vscode from './fake-vscode';

/** A daemon stand-in that answers server commands from a table and records them. */
function fakeDaemon(answers: Record<string, unknown>) {
  const sent: [string, unknown][] = [];
  return {
    sent,
    running: true,
    command: async (command: string, arg: unknown) => {
      sent.push([command, arg]);
      return answers[command];
    },
  };
}

function context(daemon: ReturnType<typeof fakeDaemon>): CommandContext {
  return { daemon, log: vscode.window.createOutputChannel('t'), status: {}, panel: {}, secrets: {} } as unknown as CommandContext;
}

const endpoints = {
  endpoints: [
    { uri: 'file:///w/hello.py', name: 'greet', gpu: 'CPU', line: 7, methods: [] },
    { uri: 'file:///w/hello.py', name: 'gradient', gpu: 'H100', line: 12, methods: [] },
  ],
};

describe('commands', () => {
  beforeEach(() => vscode.reset());

  it('Run endpoint: picks from the daemon\'s endpoints, then runs the one picked', async () => {
    const daemon = fakeDaemon({ 'slipstream.server.listEndpoints': endpoints, 'slipstream.server.run': { runId: 'r1' } });
    vscode.answers.showQuickPick = (items: { ref: unknown }[]) => items[1];
    await runEndpoint(context(daemon));
    const [items] = vscode.calls.find((c) => c[0] === 'showQuickPick')!.slice(1) as [{ label: string; description: string; detail: string }[]];
    assert.deepEqual(items.map((i) => [i.label, i.description, i.detail]), [
      ['$(play) greet', 'CPU', '/w/hello.py:8'],
      ['$(play) gradient', 'H100', '/w/hello.py:13'],
    ]);
    assert.deepEqual(daemon.sent.at(-1), ['slipstream.server.run', { uri: 'file:///w/hello.py', endpoint: 'gradient' }]);
  });

  it('Run endpoint with an argument (a lens) runs it without asking', async () => {
    const daemon = fakeDaemon({ 'slipstream.server.run': { runId: 'r1' } });
    await runEndpoint(context(daemon), { uri: 'file:///w/hello.py', endpoint: 'greet', kwargs: { name: 'x' } });
    assert.ok(!vscode.calls.some((c) => c[0] === 'showQuickPick'));
    assert.deepEqual(daemon.sent, [['slipstream.server.run', { uri: 'file:///w/hello.py', endpoint: 'greet', kwargs: { name: 'x' } }]]);
  });

  it('Swap model: a QuickPick of alternatives (id, VRAM fit, $/s), applied with applyModel', async () => {
    const daemon = fakeDaemon({
      'slipstream.server.modelAlternatives': {
        current: 'Qwen/Qwen3-0.6B',
        kind: 'llm',
        items: [
          { id: 'Qwen/Qwen3-0.6B', label: 'Qwen3 0.6B', description: '', paramsB: 0.596, vramGb: 1.4, fits: true, pricePerSecond: 0.00116 },
          { id: 'Qwen/Qwen3-32B', label: 'Qwen3 32B', description: '', paramsB: 32.762, vramGb: 78.6, fits: false, pricePerSecond: 0.00155 },
        ],
      },
      'slipstream.server.applyModel': { applied: true },
    });
    vscode.answers.showQuickPick = (items: unknown[]) => items[1];
    await swapModel(context(daemon), { uri: 'file:///w/p.py', endpoint: 'write' });
    const [items] = vscode.calls.find((c) => c[0] === 'showQuickPick')!.slice(1) as [{ label: string; description: string }[]];
    assert.deepEqual(items.map((i) => i.label), ['Qwen/Qwen3-0.6B', 'Qwen/Qwen3-32B']);
    assert.equal(items[0].description, '(current) $(check) fits · 1.4 GB VRAM · $0.00116/s');
    assert.equal(items[1].description, '$(warning) too large · 78.6 GB VRAM · $0.00155/s');
    assert.deepEqual(daemon.sent.at(-1), ['slipstream.server.applyModel', { uri: 'file:///w/p.py', endpoint: 'write', modelId: 'Qwen/Qwen3-32B' }]);
  });

  it('shows the daemon\'s error instead of failing silently', async () => {
    const daemon = fakeDaemon({});
    daemon.command = async () => {
      throw new Error('no such endpoint');
    };
    await runEndpoint(context(daemon), { uri: 'file:///w/x.py', endpoint: 'nope' });
    assert.ok(vscode.calls.some((c) => c[0] === 'showErrorMessage' && /Run endpoint failed: no such endpoint/.test(String(c[1]))));
  });
});
