import './register';
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { preferClientCommand } from '../../src/protocol';

describe('language client', () => {
  it('sends the daemon\'s "Swap model" lens to the extension\'s QuickPick, with the same argument', () => {
    const arg = { uri: 'file:///w/hello.py', endpoint: 'paint' };
    assert.deepEqual(preferClientCommand({ title: '⇄ Swap model', command: 'slipstream.server.swapModel', arguments: [arg] }), {
      title: '⇄ Swap model', command: 'slipstream.swapModel', arguments: [arg],
    });
  });

  it('leaves other server commands (Run) to the language client', () => {
    assert.equal(preferClientCommand({ title: '▶ Run on H100', command: 'slipstream.server.run' }).command, 'slipstream.server.run');
  });
});
