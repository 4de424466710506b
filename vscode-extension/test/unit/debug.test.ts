import './register';
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { DEBUG_TYPE, endpointConfiguration, resolveConfiguration } from '../../src/debug';
import { preferClientCommand, ServerCommand } from '../../src/protocol';

describe('the "slipstream" debug type', () => {
  it('the Debug lens command becomes the extension\'s, which starts a debug session', () => {
    const lens = preferClientCommand({ command: ServerCommand.debug, arguments: [{ uri: 'file:///w/hello.py', endpoint: 'greet' }] });
    assert.equal(lens.command, 'slipstream.debugEndpoint');
    assert.deepEqual(endpointConfiguration('file:///w/hello.py', 'Painter', 'paint'), {
      type: DEBUG_TYPE, request: 'attach', name: 'Debug Painter.paint on the runtime', uri: 'file:///w/hello.py', endpoint: 'Painter', method: 'paint',
    });
  });

  it('a launch.json configuration gets its file as a uri, or the active editor\'s', () => {
    const fromFile = resolveConfiguration({ type: 'slipstream', request: 'launch', name: 'x', endpoint: 'greet', file: '/w/hello.py' }, undefined);
    assert.ok(typeof fromFile !== 'string');
    assert.equal(fromFile.uri, 'file:///w/hello.py');
    assert.equal(fromFile.request, 'attach');
    const active = resolveConfiguration({ type: 'slipstream', request: 'attach', name: 'x', endpoint: 'greet' }, 'file:///w/other.py');
    assert.ok(typeof active !== 'string' && active.uri === 'file:///w/other.py');
  });

  it('says what is missing instead of starting a session that cannot work', () => {
    assert.match(String(resolveConfiguration({ type: 'slipstream', request: 'attach', name: 'x' }, undefined)), /needs "endpoint".*or "port"/);
    assert.match(String(resolveConfiguration({ type: 'slipstream', request: 'attach', name: 'x', endpoint: 'greet' }, undefined)), /say in "file"/);
    assert.match(String(resolveConfiguration({ type: 'slipstream', request: 'attach', name: 'x', port: 70000 }, undefined)), /"port" must be a TCP port/);
    assert.match(String(resolveConfiguration({ type: '', request: '', name: '' }, undefined)), /Debug lens/);
    const attach = resolveConfiguration({ type: 'slipstream', request: 'attach', name: 'x', port: 5678 }, undefined);
    assert.ok(typeof attach !== 'string' && attach.port === 5678);
  });
});
