import './register';
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { ClientCommand, Notification, ServerCommand } from '../../src/protocol';

/** out/test/unit -> vscode-extension -> repository root */
const EXT = path.resolve(__dirname, '../../..');
const DOC = path.resolve(EXT, '..', 'docs', 'lsp-protocol.md');
const doc = fs.readFileSync(DOC, 'utf8');
const source = fs.readFileSync(path.join(EXT, 'src', 'protocol.ts'), 'utf8');
const pkg = JSON.parse(fs.readFileSync(path.join(EXT, 'package.json'), 'utf8'));

/** The first column of the "Commands" table: `slipstream.server.*` names. */
function docCommands(): string[] {
  const section = doc.split(/^## /m).find((s) => s.startsWith('Commands'))!;
  return [...section.matchAll(/^\|\s*`(slipstream\.server\.[A-Za-z]+)`\s*\|/gm)].map((m) => m[1]);
}

/** The bullets of the "Notifications" section: `slipstream/*` names. */
function docNotifications(): string[] {
  const section = doc.split(/^## /m).find((s) => s.startsWith('Notifications'))!;
  return [...section.matchAll(/^-\s*`(slipstream\/[A-Za-z]+)`/gm)].map((m) => m[1]);
}

/** Top-level field names of `Name = {...}` in the doc's payload block (nested braces skipped). */
function docFields(name: string): string[] {
  const start = doc.indexOf(`${name} = {`);
  assert.ok(start >= 0, `${name} is not in the doc`);
  let depth = 0;
  let body = '';
  for (const ch of doc.slice(start + name.length + 4)) {
    if (ch === '{' || ch === '[') depth++;
    if (ch === '}' || ch === ']') {
      if (depth === 0) break;
      depth--;
      continue;
    }
    if (depth === 0) body += ch;
  }
  return [...body.replace(/\/\/.*$/gm, '').matchAll(/(?:^|[,{\s])([A-Za-z]+)\??\s*(?=[:,]|$)/gm)].map((m) => m[1]).filter((f) => !/^(number|string|bool|any)$/.test(f));
}

/** Field names of `export interface Name { ... }` in src/protocol.ts. */
function tsFields(name: string): string[] {
  const m = new RegExp(`export interface ${name} \\{([\\s\\S]*?)\\n\\}`).exec(source);
  assert.ok(m, `interface ${name} is not in protocol.ts`);
  return [...m[1].matchAll(/^ {2}([A-Za-z]+)\??:/gm)].map((x) => x[1]);
}

describe('protocol mirror of docs/lsp-protocol.md', () => {
  it('has exactly the server commands the doc lists', () => {
    const documented = docCommands();
    assert.ok(documented.length >= 8, `parsed ${documented.length} commands from the doc`);
    assert.deepEqual(Object.values(ServerCommand).sort(), [...documented].sort());
  });

  it('has exactly the notifications the doc lists', () => {
    const documented = docNotifications();
    assert.ok(documented.length >= 5);
    assert.deepEqual(Object.values(Notification).sort(), [...documented].sort());
  });

  for (const payload of ['RunResult', 'DeployResult', 'RuntimeStatus']) {
    it(`mirrors the fields of ${payload}`, () => {
      assert.deepEqual(tsFields(payload).sort(), docFields(payload).sort());
    });
  }

  it('mirrors the fields of the runStarted and runLog notifications', () => {
    const fields = (n: string) => /`\{([^}]*)\}`/.exec(doc.split('\n').find((l) => l.includes(`\`${n}\``))!)![1].split(',').map((f) => f.split(':')[0].trim());
    assert.deepEqual(tsFields('RunStarted').sort(), fields('slipstream/runStarted').sort());
    assert.deepEqual(tsFields('RunLog').sort(), fields('slipstream/runLog').sort());
  });

  it('keeps the extension\'s own commands apart from the server\'s and contributes all of them', () => {
    const contributed = pkg.contributes.commands.map((c: { command: string }) => c.command).sort();
    assert.deepEqual(Object.values(ClientCommand).sort(), contributed);
    for (const c of contributed) assert.ok(!c.startsWith('slipstream.server.'), c);
    for (const example of doc.matchAll(/`(slipstream\.(?!server\.)[A-Za-z]+)`/g)) assert.ok(contributed.includes(example[1]), `${example[1]} from the doc`);
  });

  it('declares the settings, activation events and no hard dependency on the Python extension', () => {
    const props = Object.keys(pkg.contributes.configuration.properties).sort();
    assert.deepEqual(props, ['slipstream.python', 'slipstream.runtime', 'slipstream.runtimes', 'slipstream.trace.server']);
    assert.deepEqual(pkg.activationEvents, ['onLanguage:python', 'workspaceContains:**/slipstream.toml']);
    assert.equal(pkg.extensionDependencies, undefined);
    assert.equal(pkg.main, './dist/extension.js');
  });
});
