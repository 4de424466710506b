// ---- Several runtimes (issue 15, RTE) --------------------------------------------------------
// "Slipstream: Connect to a GPU machine…" connects over SSH to the OpenSSH server started here
// (ssh_host.py: an alias `testhost` whose runtime reports an H100), adds it to the project's
// slipstream.toml, and then the H100 endpoint runs there while the CPU endpoint runs on the
// embedded runtime: lenses, the status bar and both run cards name their runtime. The editor
// with both cards is docs/images/runtimes.png (SLIPSTREAM_E2E_DOCS=1).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { check, PYTHON, say, shot } from './harness.mjs';

const HERE = path.dirname(new URL(import.meta.url).pathname);
const REPO_DOCS = path.resolve(HERE, '..', '..', '..', 'docs');

/** Starts the SSH host and puts its client settings into this process's environment, which
 * code-server (and so the extension, the daemon and `slipstream connect`) inherits. */
export async function startSshHost() {
  const proc = spawn(PYTHON, [path.join(HERE, 'ssh_host.py')], { stdio: ['pipe', 'pipe', 'inherit'] });
  const line = await new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0]);
    });
    proc.on('exit', (code) => reject(new Error(`ssh_host.py exited with ${code}`)));
  });
  const info = JSON.parse(line);
  Object.assign(process.env, info.env);
  say(`ssh host on 127.0.0.1:${info.port} (alias testhost)`);
  return {
    stop: () => new Promise((resolve) => {
      proc.on('exit', resolve);
      proc.stdin.end();
      setTimeout(resolve, 15_000);
    }),
  };
}

const ROUTED = `"""Two endpoints, two runtimes: the H100 one on the connected machine, the CPU one here."""

import os

from slipstream import endpoint


@endpoint(gpu="H100", example={"x": 2})
def on_gpu(x: int) -> str:
    return f"on_gpu({x}) ran at {os.environ['SLIPSTREAM_RUNTIME_URL']}"


@endpoint(example={"x": 3})
def on_cpu(x: int) -> str:
    return f"on_cpu({x}) ran at {os.environ['SLIPSTREAM_RUNTIME_URL']}"
`;

export async function runtimeSteps(page, env, frame) {
  const folder = path.join(env.ws, 'multi');
  await check('Connect to a GPU machine…: pick testhost from the ssh config; it is added to slipstream.toml', async () => {
    fs.mkdirSync(folder, { recursive: true });
    fs.writeFileSync(path.join(folder, 'slipstream.toml'), '[project]\nname = "multi"\n');
    fs.writeFileSync(path.join(folder, 'routed.py'), ROUTED);
    // opened from the Explorer: Quick Open's index may not have the file just written yet
    const tree = page.locator('.explorer-folders-view .monaco-list-row');
    await tree.filter({ hasText: /^multi$/ }).first().click({ timeout: 15_000 });
    await tree.filter({ hasText: /^routed\.py$/ }).first().click({ timeout: 15_000 });
    await page.locator('.tab.active', { hasText: 'routed.py' }).waitFor({ timeout: 15_000 });
    await page.locator('.contentWidgets .codelens-decoration a', { hasText: /Run on H100/ }).first().waitFor({ timeout: 90_000 });
    await page.keyboard.press('Control+Shift+P');
    await page.locator('.quick-input-widget input').waitFor({ timeout: 10_000 });
    await page.keyboard.type('Slipstream: Connect to a GPU machine');
    await page.locator('.quick-input-list .monaco-list-row', { hasText: 'Connect to a GPU machine' }).first().waitFor({ timeout: 10_000 });
    await page.keyboard.press('Enter');
    const host = page.locator('.quick-input-list .monaco-list-row', { hasText: 'testhost' }).first();
    await host.waitFor({ timeout: 10_000 });
    const offered = await page.locator('.quick-input-list .monaco-list-row').allInnerTexts();
    say(`offered: ${JSON.stringify(offered)}`);
    if (!offered.some((t) => t.includes('user@host'))) throw new Error('no "user@host…" entry in the picker');
    await shot(page, 'connect-picker');
    await host.click();
    await page.locator('.notification-toast', { hasText: /connecting to testhost/ }).first().waitFor({ timeout: 30_000 });
    await shot(page, 'connect-progress');
    const done = page.locator('.notification-toast', { hasText: /connected to testhost/ }).first();
    await done.waitFor({ timeout: 300_000 });
    say(`notification: ${(await done.innerText()).replace(/\s+/g, ' ')}`);
    const toml = fs.readFileSync(path.join(folder, 'slipstream.toml'), 'utf8');
    if (!/\[runtimes\.testhost\]\nurl = "ssh:\/\/testhost"\ngpus = \["H100"\]/.test(toml)) throw new Error(`slipstream.toml is now:\n${toml}`);
  });

  const gpuLens = page.locator('.contentWidgets .codelens-decoration a', { hasText: /Run on H100 · testhost/ }).first();
  const cpuLens = page.locator('.contentWidgets .codelens-decoration a', { hasText: /Run \(CPU\) · local/ }).first();
  await check('the lenses say where each endpoint runs: "▶ Run on H100 · testhost", "▶ Run (CPU) · local"', async () => {
    await gpuLens.waitFor({ timeout: 60_000 });
    await cpuLens.waitFor({ timeout: 60_000 });
  });

  await check('Run both: each card names its runtime; the status bar shows testhost with its H100', async () => {
    await gpuLens.click();
    const gpuCard = frame.locator('article.card', { hasText: 'on_gpu' }).first();
    await gpuCard.locator('.output.text pre', { hasText: 'on_gpu(2) ran at' }).waitFor({ timeout: 300_000 });
    await cpuLens.click();
    const cpuCard = frame.locator('article.card', { hasText: 'on_cpu' }).first();
    await cpuCard.locator('.output.text pre', { hasText: 'on_cpu(3) ran at' }).waitFor({ timeout: 150_000 });
    const g = (await gpuCard.innerText()).replace(/\s+/g, ' ');
    const c = (await cpuCard.innerText()).replace(/\s+/g, ' ');
    say(`gpu card: ${g}\ncpu card: ${c}`);
    if (!/\btesthost\b/.test(g) || !/\bok\b/.test(g)) throw new Error(`the H100 card does not name testhost: ${g}`);
    if (!/\blocal\b/.test(c) || !/\bok\b/.test(c)) throw new Error(`the CPU card does not name local: ${c}`);
    const gpuAt = /ran at (\S+)/.exec(g)?.[1];
    const cpuAt = /ran at (\S+)/.exec(c)?.[1];
    if (!gpuAt || gpuAt === cpuAt) throw new Error(`both ran at the same runtime (${gpuAt})`);
    const item = page.locator('.statusbar-item', { hasText: /testhost · H100/ }).first();
    await item.waitFor({ timeout: 30_000 });
    say(`status bar: ${JSON.stringify(await page.locator('.statusbar-item', { hasText: /testhost|local/ }).allInnerTexts())}`);
    const file = await shot(page, 'runtimes-two-cards');
    if (process.env.SLIPSTREAM_E2E_DOCS) fs.copyFileSync(file, path.join(REPO_DOCS, 'images', 'runtimes.png'));
  });

  await check('Disconnect…: testhost leaves slipstream.toml, its status bar item goes, the lens is one runtime\'s again', async () => {
    await page.keyboard.press('Control+Shift+P');
    await page.locator('.quick-input-widget input').waitFor({ timeout: 10_000 });
    await page.keyboard.type('Slipstream: Disconnect');
    await page.locator('.quick-input-list .monaco-list-row', { hasText: 'Slipstream: Disconnect' }).first().waitFor({ timeout: 10_000 });
    await page.keyboard.press('Enter');
    await page.locator('.quick-input-list .monaco-list-row', { hasText: 'testhost' }).first().click({ timeout: 10_000 });
    await page.locator('.quick-input-list .monaco-list-row', { hasText: 'Disconnect and stop its runtime' }).first().waitFor({ timeout: 10_000 });
    await page.keyboard.press('Enter'); // the first choice: "Disconnect" (the runtime keeps running on the host)
    await page.locator('.notification-toast', { hasText: /disconnected testhost/ }).first().waitFor({ timeout: 60_000 });
    const toml = fs.readFileSync(path.join(folder, 'slipstream.toml'), 'utf8');
    if (/runtimes\.testhost/.test(toml)) throw new Error(`testhost is still in slipstream.toml:\n${toml}`);
    await page.locator('.statusbar-item', { hasText: /testhost · H100/ }).first().waitFor({ state: 'detached', timeout: 30_000 });
    await page.locator('.contentWidgets .codelens-decoration a', { hasText: /^▶ Run on H100$/ }).first().waitFor({ timeout: 30_000 });
    await shot(page, 'runtimes-disconnected');
  });
}
// ---- end of the several-runtimes block -------------------------------------------------------
