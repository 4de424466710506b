import './register';
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { readSshHosts, runtimeName, sshConfigHosts, tomlAddRuntime, tomlRemoveRuntime, tomlRuntimes } from '../../src/connect';
import { routedText } from '../../src/status';

describe('connect to a GPU machine', () => {
  it('offers the concrete Host aliases of ~/.ssh/config and the files it includes', () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'slipstream-ssh-'));
    fs.mkdirSync(path.join(home, '.ssh', 'conf.d'), { recursive: true });
    fs.writeFileSync(path.join(home, '.ssh', 'config'), 'Include conf.d/*\nHost gpu-box lab\n  HostName 10.0.0.2\nHost *.internal !bad\nHost *\n  User me\n# Host commented\n');
    fs.writeFileSync(path.join(home, '.ssh', 'conf.d', 'sky'), 'Host sky-cluster\n  HostName 1.2.3.4\n');
    assert.deepEqual(readSshHosts(home, ''), ['sky-cluster', 'gpu-box', 'lab']);
    fs.writeFileSync(path.join(home, 'other'), 'Host testhost\n');
    assert.deepEqual(readSshHosts(home, path.join(home, 'other')), ['testhost']);
    assert.deepEqual(sshConfigHosts('Host a b?\nhost "c"'), ['a', 'c']);
  });

  it('names the runtime after the host', () => {
    assert.equal(runtimeName('me@gpu-box:2222'), 'gpu-box');
    assert.equal(runtimeName('ssh://root@1.2.3.4'), '1.2.3.4');
  });

  it('adds, replaces and removes [runtimes.NAME] in slipstream.toml, keeping the rest', () => {
    const start = '[project]\nname = "app"\n\n[runtimes.other]\nurl = "https://x"\n';
    const added = tomlAddRuntime(start, 'gpu-box', 'ssh://me@gpu-box', ['H100']);
    assert.deepEqual(tomlRuntimes(added), [{ name: 'other', url: 'https://x' }, { name: 'gpu-box', url: 'ssh://me@gpu-box' }]);
    assert.match(added, /\[runtimes\.gpu-box\]\nurl = "ssh:\/\/me@gpu-box"\ngpus = \["H100"\]/);
    const again = tomlAddRuntime(added, 'gpu-box', 'ssh://me@gpu-box:2222', []);
    assert.deepEqual(tomlRuntimes(again).map((r) => r.url), ['https://x', 'ssh://me@gpu-box:2222']);
    const removed = tomlRemoveRuntime(again, 'gpu-box');
    assert.deepEqual(tomlRuntimes(removed), [{ name: 'other', url: 'https://x' }]);
    assert.ok(removed.startsWith('[project]\nname = "app"\n'));
    assert.equal(tomlAddRuntime('', 'a', 'ssh://a', []), '[runtimes.a]\nurl = "ssh://a"\n');
  });

  it('shows each runtime in the status bar: connected with GPUs and spend, or offline', () => {
    const gpus = [{ name: 'H100', memoryGb: 80, count: 1 }];
    assert.equal(routedText({ name: 'gpu-box', url: 'ssh://gpu-box', kind: 'remote', connected: true, gpus, spendUsd: 0.0012, endpoints: ['big'] }), '$(server) gpu-box · H100 · $0.0012');
    assert.equal(routedText({ name: 'gpu-box', url: 'ssh://gpu-box', kind: 'remote', connected: false, gpus, spendUsd: 0, endpoints: [] }), '$(debug-disconnect) gpu-box · offline · H100 (declared)');
    assert.equal(routedText({ name: 'local', url: 'embedded', kind: 'embedded', connected: true, gpus: [], spendUsd: 0, endpoints: ['small'] }), '$(vm) local · CPU · $0.0000');
  });
});
