// The e2e test's machinery: paths, step bookkeeping with screenshots, code-server set-up and
// tear-down. The steps themselves (what a user does and sees) are in run.mjs.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const EXT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const REPO = gitRoot() ?? path.resolve(EXT, '..');
export const PYTHON = process.env.SLIPSTREAM_PYTHON ?? path.join(REPO, '.venv', 'bin', 'python');
export const RESULTS = path.join(EXT, 'test-results');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_FLAGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
];
/** User settings that keep VS Code's first-run UI (welcome, chat, tips, updates) out of the way. */
const USER_SETTINGS = {
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

const started = Date.now();
export const shots = [];
export const steps = [];
let shotCount = 0;

function gitRoot() {
  try {
    return execFileSync('git', ['rev-parse', '--show-toplevel'], { cwd: EXT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

/** A timestamped line on stdout. */
export function say(message) {
  console.log(`[e2e ${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${message}`);
}

/** Saves test-results/NN-name.png and prints its path. */
export async function shot(page, name) {
  const file = path.join(RESULTS, `${String(++shotCount).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file });
  shots.push(file);
  say(`screenshot ${file}`);
  return file;
}

/** Runs one named step; its failure fails the run. */
export async function check(name, fn) {
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
      if ((await fetch(url)).ok) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${url} did not answer in ${timeoutMs} ms`);
}

function installCodeServer() {
  const script = path.join(EXT, 'test', 'e2e', 'install-code-server.sh');
  const out = execFileSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const m = /ready at (\S+)/.exec(out);
  if (!m) throw new Error(`install-code-server.sh did not say where code-server is:\n${out}`);
  return m[1];
}

/** examples/hello when it has a gpu="H100" endpoint, else the extension's own fixture. */
function chooseProject() {
  if (process.env.SLIPSTREAM_E2E_PROJECT) return path.resolve(process.env.SLIPSTREAM_E2E_PROJECT);
  const hello = path.join(REPO, 'examples', 'hello', 'hello.py');
  if (fs.existsSync(hello) && /gpu="H100"/.test(fs.readFileSync(hello, 'utf8'))) return path.dirname(hello);
  return path.join(EXT, 'test', 'fixtures', 'hello');
}

function writeJson(file, value) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(value, null, 2));
}

/**
 * Installs code-server (cached), packages and installs the .vsix, and lays out a temporary
 * workspace: a copy of the project, the extras, and `.vscode/settings.json` naming the
 * interpreter. Returns the paths.
 */
export async function prepare() {
  fs.rmSync(RESULTS, { recursive: true, force: true });
  fs.mkdirSync(RESULTS, { recursive: true });
  say(`repo ${REPO}, python ${PYTHON}`);
  if (!fs.existsSync(PYTHON)) throw new Error(`no interpreter at ${PYTHON}: set SLIPSTREAM_PYTHON`);
  const codeServer = await check('install code-server and Chromium (cached)', async () => installCodeServer());
  const vsix = await check('package the .vsix', async () => {
    execFileSync('npm', ['run', '--silent', 'package'], { cwd: EXT, stdio: ['ignore', 'ignore', 'inherit'] });
    return path.join(EXT, 'dist', 'slipstream.vsix');
  });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'slipstream-e2e-'));
  const env = { codeServer, tmp, userData: path.join(tmp, 'user-data'), extDir: path.join(tmp, 'extensions'), ws: path.join(tmp, 'hello') };
  const project = chooseProject();
  say(`project ${project} -> ${env.ws}`);
  fs.cpSync(project, env.ws, { recursive: true, filter: (src) => !/__pycache__|\.vscode/.test(src) });
  fs.cpSync(path.join(EXT, 'test', 'fixtures', 'extras'), env.ws, { recursive: true, filter: (src) => !src.endsWith('README.md') });
  writeJson(path.join(env.ws, '.vscode', 'settings.json'), { 'slipstream.python': PYTHON });
  writeJson(path.join(env.userData, 'User', 'settings.json'), USER_SETTINGS);
  await check('install the .vsix into code-server', async () => {
    execFileSync(codeServer, ['--user-data-dir', env.userData, '--extensions-dir', env.extDir, '--install-extension', vsix], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    if (!fs.readdirSync(env.extDir).some((d) => d.startsWith('slipstream.slipstream-'))) throw new Error(`not installed in ${env.extDir}`);
  });
  return env;
}

/** Starts code-server on a free loopback port (offline flags) and a headless Chromium page on it. */
export async function launch(env) {
  const port = await freePort();
  const log = fs.createWriteStream(path.join(RESULTS, 'code-server.log'));
  const cs = spawn(
    env.codeServer,
    [
      '--auth', 'none', '--bind-addr', `127.0.0.1:${port}`, '--disable-telemetry', '--disable-update-check',
      '--disable-workspace-trust', '--disable-getting-started-override', '--user-data-dir', env.userData,
      '--extensions-dir', env.extDir, env.ws,
    ],
    { env: { ...process.env, CI: 'true' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  cs.stdout.pipe(log);
  cs.stderr.pipe(log);
  const consoleLines = [];
  const session = { cs, port, consoleLines, browser: undefined, page: undefined, url: `http://127.0.0.1:${port}/?folder=${encodeURIComponent(env.ws)}` };
  await check(`start code-server on 127.0.0.1:${port}`, () => waitHttp(`http://127.0.0.1:${port}/healthz`, 60_000, cs));
  session.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
  session.page = await session.browser.newPage({ viewport: { width: 1600, height: 1000 } });
  session.page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
  session.page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.message}`));
  return session;
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
export async function openFile(page, name) {
  // A file the test has just written may not be in Quick Open's index yet (it follows file
  // events): refresh the explorer and ask again before giving up.
  for (let attempt = 1; ; attempt++) {
    await page.keyboard.press('Control+P');
    await page.locator('.quick-input-widget input').waitFor({ timeout: 15_000 });
    await page.keyboard.type(name);
    try {
      await page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first().waitFor({ timeout: 10_000 });
      break;
    } catch (err) {
      if (attempt === 3) throw err;
      await page.keyboard.press('Escape');
      await runCommand(page, 'Refresh Explorer');
    }
  }
  await page.keyboard.press('Enter');
  await page.locator('.tab.active', { hasText: name }).waitFor({ timeout: 15_000 });
}

/** Runs a command from the palette by its title. */
async function runCommand(page, title) {
  await page.keyboard.press('Control+Shift+P');
  await page.locator('.quick-input-widget input').waitFor({ timeout: 10_000 });
  await page.keyboard.type(title);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first().waitFor({ timeout: 10_000 });
  await page.keyboard.press('Enter');
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
  const signal = (sig) => left.forEach((p) => {
    try {
      process.kill(p.pid, sig);
    } catch {
      /* gone */
    }
  });
  signal('SIGTERM');
  await new Promise((r) => setTimeout(r, 2_000));
  signal('SIGKILL');
}

/** Keeps the last screenshot, the browser console and the extension's log; stops everything. */
export async function tearDown(env, session) {
  if (session?.page) {
    const last = path.join(RESULTS, 'last.png');
    await session.page.screenshot({ path: last }).then(() => shots.push(last), () => {});
  }
  if (session) fs.writeFileSync(path.join(RESULTS, 'browser-console.log'), session.consoleLines.join('\n'));
  if (env) {
    for (const log of extensionLogs(env.userData)) {
      const dest = path.join(RESULTS, `ext-${path.basename(path.dirname(log))}-${path.basename(log)}`);
      fs.copyFileSync(log, dest);
      say(`extension log ${dest}`);
    }
  }
  await session?.browser?.close().catch(() => {});
  if (session) await stopCodeServer(session.cs);
  if (env) {
    await sweep(env.tmp);
    if (process.env.SLIPSTREAM_E2E_KEEP) say(`kept ${env.tmp}`);
    else fs.rmSync(env.tmp, { recursive: true, force: true, maxRetries: 3 });
  }
}
