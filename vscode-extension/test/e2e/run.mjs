#!/usr/bin/env node
// End-to-end test of the packaged extension in a real VS Code (code-server), driven headless
// with playwright-core: what a user sees, step by step, with a screenshot of each step.
//
//   npm run test:e2e
//
// Environment:
//   SLIPSTREAM_SHARED   the shared/ folder with tools/install-code-server.sh
//                       (default: <repo>/../shared)
//   SLIPSTREAM_PYTHON   interpreter with slipstream installed (default: <repo>/.venv/bin/python)
//   SLIPSTREAM_E2E_PROJECT  project folder to open (default: examples/hello if its hello.py has
//                       a gpu="H100" endpoint, else test/fixtures/hello)
//   SLIPSTREAM_E2E_KEEP=1   keep the temporary folder (user data, logs) after the run
//
// Screenshots and logs go to vscode-extension/test-results/. Exits non-zero on failure.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const EXT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const REPO = gitRoot() ?? path.resolve(EXT, '..');
const SHARED = process.env.SLIPSTREAM_SHARED ?? path.resolve(REPO, '..', 'shared');
const PYTHON = process.env.SLIPSTREAM_PYTHON ?? path.join(REPO, '.venv', 'bin', 'python');
const RESULTS = path.join(EXT, 'test-results');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_FLAGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
];
const T = { lens: 90_000, run: 150_000, diag: 60_000 };

const BROKEN = `from slipstream import endpoint


def divide(a, b):
    return a / b


@endpoint(example={"n": 0})
def ratio(n: int) -> float:
    return divide(1, n)
`;

const WRITER = `from slipstream import endpoint


@endpoint(gpu="L4", example={"prompt": "a cat"})
def write(prompt: str) -> str:
    model_id = "Qwen/Qwen3-0.6B"
    return f"{model_id}: {prompt}"
`;

const started = Date.now();
const shots = [];
const steps = [];
let step = 0;

function gitRoot() {
  try {
    return execFileSync('git', ['rev-parse', '--show-toplevel'], { cwd: EXT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

function say(message) {
  console.log(`[e2e ${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${message}`);
}

async function shot(page, name) {
  const file = path.join(RESULTS, `${String(++step).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file });
  shots.push(file);
  say(`screenshot ${file}`);
  return file;
}

async function check(name, fn) {
  say(`▶ ${name}`);
  const t0 = Date.now();
  try {
    const out = await fn();
    steps.push({ name, ok: true, ms: Date.now() - t0 });
    say(`✔ ${name} (${Date.now() - t0} ms)`);
    return out;
  } catch (err) {
    steps.push({ name, ok: false, ms: Date.now() - t0 });
    say(`✖ ${name}: ${err?.message ?? err}`);
    throw err;
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitHttp(url, timeoutMs, proc) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`code-server exited with ${proc.exitCode}`);
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${url} did not answer in ${timeoutMs} ms`);
}

function installCodeServer() {
  const script = path.join(SHARED, 'tools', 'install-code-server.sh');
  if (!fs.existsSync(script)) throw new Error(`${script} not found: set SLIPSTREAM_SHARED to the shared/ folder`);
  const out = execFileSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const m = /ready at (\S+)/.exec(out);
  if (!m) throw new Error(`install-code-server.sh did not say where code-server is:\n${out}`);
  return m[1];
}

function chooseProject() {
  if (process.env.SLIPSTREAM_E2E_PROJECT) return path.resolve(process.env.SLIPSTREAM_E2E_PROJECT);
  const example = path.join(REPO, 'examples', 'hello');
  const hello = path.join(example, 'hello.py');
  if (fs.existsSync(hello) && /gpu="H100"/.test(fs.readFileSync(hello, 'utf8'))) return example;
  return path.join(EXT, 'test', 'fixtures', 'hello');
}

function writeJson(file, value) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(value, null, 2));
}

/** Every log file of the Slipstream output channel under the user-data dir. */
function extensionLogs(userData) {
  const found = [];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/slipstream/i.test(path.relative(userData, p)) && p.endsWith('.log')) found.push(p);
    }
  };
  if (fs.existsSync(path.join(userData, 'logs'))) walk(path.join(userData, 'logs'));
  return found;
}

/** Opens a workspace file with Quick Open (Ctrl+P), as a user would. */
async function openFile(page, name) {
  await page.keyboard.press('Control+P');
  await page.locator('.quick-input-widget input').waitFor({ timeout: 15_000 });
  await page.keyboard.type(name);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first().waitFor({ timeout: 15_000 });
  await page.keyboard.press('Enter');
  await page.locator('.tab.active', { hasText: name }).waitFor({ timeout: 15_000 });
}

/** Stops code-server and its process group (the extension host, the daemon). */
async function stopCodeServer(cs) {
  try {
    process.kill(-cs.pid, 'SIGTERM');
  } catch {
    return; // already gone
  }
  const deadline = Date.now() + 5_000;
  while (cs.exitCode === null && cs.signalCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
}

/**
 * Ends the processes this test started that outlived code-server: those whose working folder
 * is inside the test's temporary folder (the daemon's embedded runtime runs in its own session).
 * Each is ended by its id, and named, since a daemon should not leave them behind.
 */
async function sweep(tmp) {
  const left = [];
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cwd = fs.readlinkSync(`/proc/${pid}/cwd`).replace(/ \(deleted\)$/, '');
      if (cwd === tmp || cwd.startsWith(tmp + path.sep)) {
        left.push({ pid: Number(pid), cmd: fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim() });
      }
    } catch {
      /* gone, or not ours to read */
    }
  }
  if (!left.length) return;
  say(`${left.length} process(es) outlived code-server; ending them:\n  ${left.map((p) => `${p.pid} ${p.cmd}`).join('\n  ')}`);
  for (const p of left) {
    try {
      process.kill(p.pid, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  await new Promise((r) => setTimeout(r, 2_000));
  for (const p of left) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

async function main() {
  fs.rmSync(RESULTS, { recursive: true, force: true });
  fs.mkdirSync(RESULTS, { recursive: true });
  say(`repo ${REPO}, shared ${SHARED}, python ${PYTHON}`);
  if (!fs.existsSync(PYTHON)) throw new Error(`no interpreter at ${PYTHON}: set SLIPSTREAM_PYTHON`);

  const codeServer = await check('install code-server and Chromium (cached)', async () => installCodeServer());
  const vsix = await check('package the .vsix', async () => {
    execFileSync('npm', ['run', '--silent', 'package'], { cwd: EXT, stdio: ['ignore', 'ignore', 'inherit'] });
    return path.join(EXT, 'dist', 'slipstream.vsix');
  });

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'slipstream-e2e-'));
  const userData = path.join(tmp, 'user-data');
  const extDir = path.join(tmp, 'extensions');
  const ws = path.join(tmp, 'hello');
  const project = chooseProject();
  say(`project ${project} -> ${ws}`);
  fs.cpSync(project, ws, { recursive: true, filter: (src) => !/__pycache__|\.vscode/.test(src) });
  writeJson(path.join(ws, '.vscode', 'settings.json'), { 'slipstream.python': PYTHON });
  // an endpoint that fails two frames deep, for the error card and its traceback links
  fs.writeFileSync(path.join(ws, 'broken.py'), BROKEN);
  // an endpoint with a model id, for "⇄ Swap model"
  fs.writeFileSync(path.join(ws, 'writer.py'), WRITER);
  const user = {
    'workbench.startupEditor': 'none',
    'workbench.tips.enabled': false,
    'workbench.welcomePage.walkthroughs.openOnInstall': false,
    'workbench.secondarySideBar.defaultVisibility': 'hidden',
    'workbench.enableExperiments': false,
    'chat.disableAIFeatures': true,
    'telemetry.telemetryLevel': 'off',
    'update.mode': 'none',
    'extensions.autoCheckUpdates': false,
    'extensions.autoUpdate': false,
    'extensions.ignoreRecommendations': true,
    'security.workspace.trust.enabled': false,
    'editor.minimap.enabled': false,
    'editor.codeLens': true,
    'editor.hover.delay': 200,
    'window.commandCenter': false,
    'workbench.colorTheme': 'Default Dark Modern',
  };
  writeJson(path.join(userData, 'User', 'settings.json'), user);

  await check('install the .vsix into code-server', async () => {
    execFileSync(codeServer, ['--user-data-dir', userData, '--extensions-dir', extDir, '--install-extension', vsix], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const installed = fs.readdirSync(extDir).filter((d) => d.startsWith('slipstream.slipstream-'));
    if (!installed.length) throw new Error(`not installed in ${extDir}`);
  });

  const port = await freePort();
  const csLog = fs.createWriteStream(path.join(RESULTS, 'code-server.log'));
  const cs = spawn(
    codeServer,
    [
      '--auth', 'none', '--bind-addr', `127.0.0.1:${port}`, '--disable-telemetry', '--disable-update-check',
      '--disable-workspace-trust', '--disable-getting-started-override', '--user-data-dir', userData,
      '--extensions-dir', extDir, ws,
    ],
    { env: { ...process.env, CI: 'true' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  cs.stdout.pipe(csLog);
  cs.stderr.pipe(csLog);
  let browser;
  let page;
  const consoleLines = [];
  try {
    await check(`start code-server on 127.0.0.1:${port}`, () => waitHttp(`http://127.0.0.1:${port}/healthz`, 60_000, cs));
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
    page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.message}`));

    await check('open the workbench', async () => {
      await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(ws)}`);
      await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
      await page.locator('.statusbar').waitFor({ timeout: 60_000 });
      await shot(page, 'workbench');
    });

    await check('open hello.py', async () => {
      await page.locator('.monaco-workbench').click({ position: { x: 800, y: 500 } }).catch(() => {});
      await openFile(page, 'hello.py');
      await page.locator('.monaco-editor .view-lines').first().waitFor({ timeout: 15_000 });
      await shot(page, 'hello-py-open');
    });

    const statusItem = page.locator('.statusbar-item', { hasText: 'Slipstream' }).first();
    await check('the extension activates and starts the daemon (status bar)', async () => {
      await statusItem.waitFor({ timeout: 60_000 });
      const deadline = Date.now() + 60_000;
      let text = '';
      while (Date.now() < deadline) {
        text = (await statusItem.innerText()).trim();
        if (!/starting/.test(text)) break;
        await page.waitForTimeout(250);
      }
      say(`status bar: ${JSON.stringify(text)}`);
      await shot(page, 'status-bar');
      if (/daemon not running|starting/.test(text)) throw new Error(`the daemon did not start: status bar says ${JSON.stringify(text)}`);
      if (!/Slipstream: .+ · .+ · \$\d+\.\d{4}/.test(text)) throw new Error(`unexpected status bar text ${JSON.stringify(text)}`);
    });

    const runLens = page.locator('.contentWidgets .codelens-decoration a', { hasText: /Run on H100/ }).first();
    await check('lenses appear over the endpoint: "▶ Run on H100"', async () => {
      await runLens.waitFor({ timeout: T.lens });
      const lenses = await page.locator('.contentWidgets .codelens-decoration').allInnerTexts();
      say(`lenses: ${JSON.stringify(lenses)}`);
      await shot(page, 'lenses');
    });

    const frame = page.frameLocator('iframe.webview.ready').frameLocator('iframe#active-frame');
    await check('clicking Run shows a card with an image in the outputs panel', async () => {
      await runLens.click();
      const card = frame.locator('article.card').first();
      await card.waitFor({ timeout: 60_000 });
      await shot(page, 'run-started');
      const img = frame.locator('article.card .gallery img').first();
      await img.waitFor({ timeout: T.run });
      await page.waitForFunction(() => true);
      const size = await img.evaluate((el) => new Promise((resolve) => {
        const done = () => resolve({ w: el.naturalWidth, h: el.naturalHeight });
        if (el.complete) done();
        else el.addEventListener('load', done, { once: true });
      }));
      const header = (await card.locator('header').innerText()).replace(/\s+/g, ' ');
      say(`card: ${header}; image ${size.w}x${size.h}`);
      if (!size.w || !size.h) throw new Error('the image in the card did not load');
      if (!/gradient/.test(header) || !/\bok\b/.test(header) || !/\$\d/.test(header)) throw new Error(`unexpected card header: ${header}`);
      await shot(page, 'run-card-with-image');
    });

    await check('clicking the image enlarges it, and Escape closes it', async () => {
      await frame.locator('article.card .gallery button.thumb').first().click();
      const big = frame.locator('#lightbox:not([hidden]) img');
      await big.waitFor({ timeout: 10_000 });
      const loaded = await big.evaluate((el) => new Promise((resolve) => {
        if (el.complete) resolve(el.naturalWidth);
        else el.addEventListener('load', () => resolve(el.naturalWidth), { once: true });
      }));
      if (!loaded) throw new Error('the full-size image (webview URI of the cache file) did not load');
      await shot(page, 'image-enlarged');
      await page.keyboard.press('Escape');
      await frame.locator('#lightbox[hidden]').waitFor({ state: 'attached', timeout: 5_000 });
    });

    await check('Slipstream: Run endpoint (palette) -> pick greet -> a text card on top', async () => {
      await page.locator('.tab', { hasText: 'hello.py' }).first().click();
      await page.keyboard.press('Control+Shift+P');
      await page.locator('.quick-input-widget input').waitFor({ timeout: 10_000 });
      await page.keyboard.type('Slipstream: Run endpoint');
      await page.locator('.quick-input-list .monaco-list-row', { hasText: 'Slipstream: Run endpoint' }).first().waitFor({ timeout: 10_000 });
      await page.keyboard.press('Enter');
      const greet = page.locator('.quick-input-list .monaco-list-row', { hasText: 'greet' }).first();
      await greet.waitFor({ timeout: 30_000 });
      await shot(page, 'run-endpoint-pick');
      await greet.click();
      const text = frame.locator('article.card').first().locator('.output.text pre', { hasText: 'Hello, world!' });
      await text.waitFor({ timeout: T.run });
      const cards = await frame.locator('article.card .endpoint').allInnerTexts();
      say(`cards, newest first: ${JSON.stringify(cards)}`);
      if (cards[0] !== 'greet' || cards[1] !== 'gradient') throw new Error(`expected [greet, gradient], got ${JSON.stringify(cards)}`);
      await shot(page, 'text-card');
    });

    await check('clicking the status bar shows the runtime status', async () => {
      const text = (await statusItem.innerText()).trim();
      say(`status bar: ${JSON.stringify(text)}`);
      if (!/\$0\.0*[1-9]/.test(text)) throw new Error(`the spend since the editor opened did not grow: ${text}`);
      await statusItem.click();
      const row = page.locator('.quick-input-list .monaco-list-row', { hasText: 'since the editor opened' }).first();
      await row.waitFor({ timeout: 15_000 });
      await shot(page, 'runtime-status');
      await page.keyboard.press('Escape');
    });

    await check('a failing run shows an error card whose traceback frames open the file at the line', async () => {
      await openFile(page, 'broken.py');
      const lens = page.locator('.contentWidgets .codelens-decoration a', { hasText: /Run/ }).first();
      await lens.waitFor({ timeout: T.lens });
      await lens.click();
      const card = frame.locator('article.card-error').first();
      await card.waitFor({ timeout: T.run });
      const title = (await card.locator('.error-title').innerText()).trim();
      say(`error card: ${title}`);
      if (!/ZeroDivisionError/.test(title)) throw new Error(`unexpected error: ${title}`);
      await card.locator('details.traceback summary').click();
      await shot(page, 'error-card');
      const frameLink = card.locator('ol.frames a.frame', { hasText: /broken\.py:5/ }).first();
      await frameLink.waitFor({ timeout: 5_000 });
      await frameLink.click();
      await page.locator('.tab.active', { hasText: 'broken.py' }).waitFor({ timeout: 10_000 });
      const cursor = page.locator('.statusbar-item', { hasText: /Ln \d+, Col \d+/ }).first();
      await page.waitForFunction(
        () => [...document.querySelectorAll('.statusbar-item')].some((e) => /Ln 5, Col 1/.test(e.textContent ?? '')),
        undefined,
        { timeout: 10_000 },
      );
      say(`cursor after clicking the frame: ${(await cursor.innerText()).trim()}`);
      await shot(page, 'frame-opened');
    });

    await check('"⇄ Swap model" opens the extension\'s QuickPick and the codemod edits the model id', async () => {
      await openFile(page, 'writer.py');
      const lens = page.locator('.contentWidgets .codelens-decoration a', { hasText: /Swap model/ }).first();
      await lens.waitFor({ timeout: T.lens });
      await lens.click();
      const pick = page.locator('.quick-input-widget', { hasText: /Swap model in write/ });
      await pick.waitFor({ timeout: 30_000 });
      const rows = await page.locator('.quick-input-list .monaco-list-row').allInnerTexts();
      say(`alternatives: ${JSON.stringify(rows.slice(0, 4).map((r) => r.replace(/\s+/g, ' ')))}`);
      await shot(page, 'swap-model-pick');
      const target = page.locator('.quick-input-list .monaco-list-row', { hasText: 'Qwen/Qwen3-1.7B' }).first();
      await target.waitFor({ timeout: 10_000 });
      await target.click();
      await page.locator('.monaco-editor .view-lines', { hasText: 'Qwen/Qwen3-1.7B' }).first().waitFor({ timeout: 20_000 });
      await shot(page, 'swap-model-applied');
    });

    await check('typing an unknown GPU (gpu="H1000") shows a diagnostic', async () => {
      const source = fs.readFileSync(path.join(ws, 'hello.py'), 'utf8').split('\n');
      const line = source.findIndex((l) => l.includes('gpu="H100"'));
      if (line < 0) throw new Error('hello.py has no gpu="H100"');
      const col = source[line].indexOf('gpu="H100"') + 'gpu="H100'.length;
      await page.locator('.tab', { hasText: 'hello.py' }).first().click();
      await page.locator('.monaco-editor .view-lines').first().click();
      await page.keyboard.press('Control+G');
      await page.locator('.quick-input-widget input').waitFor({ timeout: 10_000 });
      await page.keyboard.type(`${line + 1}:${col + 1}`);
      await page.keyboard.press('Enter');
      await page.keyboard.type('0');
      const squiggle = page.locator('.monaco-editor .squiggly-error').first();
      await squiggle.waitFor({ timeout: T.diag });
      await shot(page, 'diagnostic-squiggle');
      const hover = page.locator('.monaco-hover', { hasText: /H1000/ }).first();
      for (let attempt = 0; attempt < 3 && !(await hover.isVisible()); attempt++) {
        await page.mouse.move(0, 0);
        await squiggle.hover({ force: true });
        await hover.waitFor({ timeout: 5_000 }).catch(() => {});
      }
      const problems = (await page.locator('.statusbar-item[id="status.problems"]').first().innerText().catch(() => '')).replace(/\s+/g, ' ');
      const hoverText = (await hover.innerText().catch(() => '')).replace(/\s+/g, ' ');
      say(`problems: ${problems}; hover: ${hoverText.slice(0, 200)}`);
      await shot(page, 'diagnostic-hover');
      if (!/H1000/.test(hoverText)) throw new Error(`no diagnostic for gpu="H1000" in the hover (${hoverText || 'no hover'})`);
      if (!/[1-9]/.test(problems)) throw new Error(`the Problems count did not grow: ${problems}`);
    });
  } finally {
    if (page) {
      await page.screenshot({ path: path.join(RESULTS, 'last.png') }).catch(() => {});
      shots.push(path.join(RESULTS, 'last.png'));
    }
    fs.writeFileSync(path.join(RESULTS, 'browser-console.log'), consoleLines.join('\n'));
    for (const log of extensionLogs(userData)) {
      const dest = path.join(RESULTS, `ext-${path.basename(path.dirname(log))}-${path.basename(log)}`);
      fs.copyFileSync(log, dest);
      say(`extension log ${dest}`);
    }
    await browser?.close().catch(() => {});
    await stopCodeServer(cs);
    await sweep(tmp);
    if (process.env.SLIPSTREAM_E2E_KEEP) say(`kept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true, maxRetries: 3 });
  }
}

main()
  .then(() => {
    say(`screenshots:\n  ${shots.join('\n  ')}`);
    console.log(`e2e: ${steps.filter((s) => s.ok).length} passed, 0 failed`);
  })
  .catch((err) => {
    say(`FAILED: ${err?.stack ?? err}`);
    say(`screenshots:\n  ${shots.join('\n  ')}`);
    console.log(`e2e: ${steps.filter((s) => s.ok).length} passed, 1 failed`);
    process.exit(1);
  });
