import './register';
import { strict as assert } from 'node:assert';
import { beforeEach, describe, it } from 'node:test';
import { deployLine, rebuildKept, runEndpoint, swapModel, type CommandContext } from '../../src/commands';
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

  it('Rebuild kept model: picks an endpoint of the active file, rebuilds it, and says what was reloaded', async () => {
    const rebuilt = {
      ok: true,
      message: "gradient: 1 worker(s) loaded 'gpt' again and re-ran setup() in 0.42 s",
      endpoints: [{ endpoint: 'gradient', workers: 1, released: ["'gpt'"], modelLoads: 1, rebuildS: 0.42, stale: [], errors: [] }],
    };
    const daemon = fakeDaemon({ 'slipstream.server.listEndpoints': endpoints, 'slipstream.server.rebuildKept': rebuilt });
    vscode.answers.showQuickPick = (items: unknown[]) => items[1];
    await rebuildKept(context(daemon));
    const [, options] = vscode.calls.find((c) => c[0] === 'showQuickPick')!.slice(1) as [unknown, { title: string }];
    assert.equal(options.title, 'Slipstream: Rebuild kept model — which endpoint?');
    assert.deepEqual(daemon.sent.at(-1), ['slipstream.server.rebuildKept', { uri: 'file:///w/hello.py', endpoint: 'gradient' }]);
    assert.ok(vscode.calls.some((c) => c[0] === 'showInformationMessage' && String(c[1]) === `Slipstream: ${rebuilt.message}`));
  });

  it('Rebuild kept model from a quick fix or a run card: no picker, the keys it names, a warning when something is still stale', async () => {
    const stale = { endpoint: 'Chat', key: "'gpt'", path: '(the kept object)', cls: 'model.GPT', why: 'GPT.__init__ changed' };
    const daemon = fakeDaemon({
      'slipstream.server.rebuildKept': { ok: true, message: 'Chat: still stale', endpoints: [{ endpoint: 'Chat', workers: 1, released: [], modelLoads: 0, rebuildS: 0, stale: [stale], errors: [] }] },
    });
    await rebuildKept(context(daemon), { uri: 'file:///w/app.py', endpoint: 'Chat', keys: ["'gpt'"] });
    assert.ok(!vscode.calls.some((c) => c[0] === 'showQuickPick'));
    assert.deepEqual(daemon.sent, [['slipstream.server.rebuildKept', { uri: 'file:///w/app.py', endpoint: 'Chat', keys: ["'gpt'"] }]]);
    assert.ok(vscode.calls.some((c) => c[0] === 'showWarningMessage' && /Chat: still stale/.test(String(c[1]))));
  });

  it('names the kept objects a reload left on old code in the reload line', () => {
    const base = { ok: true, generation: 'g3', changed: ['/w/model.py'], uploaded: 1, durationMs: 38.2 };
    assert.equal(deployLine(base), 'Deployed generation g3: 1 changed, 1 uploaded, 38 ms');
    assert.equal(deployLine({ ...base, kept: { updated: 2, stale: [] } }), 'Deployed generation g3: 1 changed, 1 uploaded, 38 ms; 2 kept object(s) follow the saved code');
    const stale = { endpoint: 'Chat', key: "'gpt'", path: '(the kept object)', cls: 'model.GPT', why: 'GPT.__init__ changed' };
    assert.equal(
      deployLine({ ...base, kept: { updated: 0, stale: [stale] } }),
      "Deployed generation g3: 1 changed, 1 uploaded, 38 ms; ⚠ 1 kept object(s) run old code (Chat: 'gpt'): Rebuild kept model",
    );
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
