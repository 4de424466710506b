import './register';
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import {
  contentSecurityPolicy,
  escapeHtml,
  formatCost,
  formatDuration,
  renderCard,
  renderCards,
  renderJson,
  renderPage,
  retrySummary,
  terminalLines,
  type RunCard,
} from '../../src/panel/render';
import type { RunResult } from '../../src/protocol';

const toUri = (p: string) => `https://webview.test${p}`;
const XSS = `<script>alert(1)</script><img src=x onerror="alert(2)">`;

function result(over: Partial<RunResult> = {}): RunResult {
  return {
    runId: 'r1', uri: 'file:///w/hello.py', endpoint: 'greet', method: null, gpu: 'H100', status: 'ok',
    durationS: 2.7, costUsd: 0.003132, images: [], logs: [], ...over,
  };
}

function card(over: Partial<RunCard> = {}, r?: Partial<RunResult>): RunCard {
  const base: RunCard = { runId: 'r1', uri: 'file:///w/hello.py', endpoint: 'greet', gpu: 'H100', startedAt: 1_700_000_000_000, status: 'ok', logs: [] };
  const c = { ...base, ...over };
  if (r) c.result = result({ runId: c.runId, endpoint: c.endpoint, ...r });
  return c;
}

const TAGS = new Set(['article', 'header', 'span', 'section', 'pre', 'figure', 'figcaption', 'button', 'img', 'details', 'summary', 'div', 'ol', 'li', 'a', 'p', 'b']);
const ATTRS = /^(class|title|href|src|alt|open|data-[a-z]+)$/;

/** Nothing from outputs survives as markup: every tag and attribute is one the renderer writes. */
function assertNoInjectedMarkup(html: string): void {
  for (const m of html.matchAll(/<\/?([a-zA-Z0-9]+)([^>]*)>/g)) {
    assert.ok(TAGS.has(m[1]), `unexpected <${m[1]}>`);
    for (const a of m[2].matchAll(/\s([^\s=]+)(?:="[^"]*")?/g)) assert.match(a[1], ATTRS, `unexpected attribute ${a[1]} on <${m[1]}>`);
  }
  assert.doesNotMatch(html, /<script|<img src=x/i);
}

describe('outputs panel rendering', () => {
  it('shows endpoint, GPU, status, duration and cost in the card header', () => {
    const html = renderCard(card({}, { text: 'Hello, world!' }), toUri);
    assert.match(html, /<span class="endpoint">greet<\/span>/);
    assert.match(html, /<span class="badge gpu">H100<\/span>/);
    assert.match(html, /status-ok">ok</);
    assert.match(html, />2\.70 s</);
    assert.match(html, />\$0\.0031</);
    assert.match(html, /<pre>Hello, world!<\/pre>/);
  });

  it('lists cards newest first, in the order the history keeps them', () => {
    const html = renderCards([card({ runId: 'new', endpoint: 'gradient' }, {}), card({ runId: 'old' }, {})], toUri);
    assert.ok(html.indexOf('data-run="new"') < html.indexOf('data-run="old"'));
  });

  it('shows a pending card with a ticking elapsed time while a run is in flight', () => {
    const html = renderCard(card({ status: 'running' }), toUri);
    assert.match(html, /status-running">running…</);
    assert.match(html, /class="meta duration elapsed" data-started="1700000000000"/);
  });

  it('escapes HTML in text, logs, endpoint names, errors and tracebacks', () => {
    const html = renderCard(
      card({ endpoint: XSS, logs: [{ stream: 'stderr', text: XSS }] }, {
        status: 'error',
        text: XSS,
        json: { [XSS]: XSS },
        error: { type: XSS, message: XSS, traceback: `Traceback:\n  File "${XSS}", line 3, in f\n${XSS}`, frames: [{ file: XSS, line: 3, name: XSS }] },
      }),
      toUri,
    );
    assertNoInjectedMarkup(html);
    assert.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  });

  it('escapes quotes in attributes so values cannot break out', () => {
    assert.equal(escapeHtml(`"' onload="x`), '&quot;&#39; onload=&quot;x');
    const html = renderCard(card({ runId: `" onclick="alert(1)` }, {}), toUri);
    assert.doesNotMatch(html, /" onclick="/);
  });

  it('pretty-prints JSON with two-space indentation and highlighted tokens', () => {
    const html = renderJson({ a: 1, b: ['x', true, null] });
    assert.equal(
      html.replace(/<[^>]+>/g, ''),
      escapeHtml(JSON.stringify({ a: 1, b: ['x', true, null] }, null, 2)),
    );
    assert.match(html, /<span class="j-key">&quot;a&quot;<\/span>: <span class="j-num">1<\/span>/);
    assert.match(html, /<span class="j-lit">true<\/span>/);
    const cardHtml = renderCard(card({}, { json: { score: 0.5 } }), toUri);
    assert.match(cardHtml, /class="output json"/);
  });

  it('renders images as a gallery: thumbnail shown, full image on enlarge, a save button', () => {
    const html = renderCard(
      card({}, { images: [{ path: '/cache/img/r1-0.png', thumbnail: 'data:image/png;base64,AAAA', width: 64, height: 32 }] }),
      toUri,
    );
    assert.match(html, /<section class="gallery">/);
    assert.match(html, /<img src="data:image\/png;base64,AAAA"/);
    assert.match(html, /data-action="enlarge" data-full="https:\/\/webview\.test\/cache\/img\/r1-0\.png"/);
    assert.match(html, /data-action="save-image" data-run="r1" data-index="0"/);
    assert.match(html, />64×32 </);
  });

  it('falls back to the webview URI when an image has no thumbnail, and never to a javascript: URL', () => {
    const html = renderCard(card({}, { images: [{ path: '/cache/a.png', thumbnail: 'javascript:alert(1)', width: 8, height: 8 }] }), toUri);
    assert.match(html, /<img src="https:\/\/webview\.test\/cache\/a\.png"/);
    assert.doesNotMatch(html, /javascript:/);
  });

  it('renders an error with its frames as links that name a run and a frame index, not a path', () => {
    const frames = [
      { file: '/w/hello.py', line: 12, name: 'gradient' },
      { file: '/w/lib/util.py', line: 3, name: 'helper' },
    ];
    const tb = 'Traceback (most recent call last):\n  File "/w/hello.py", line 12, in gradient\n    helper()\n  File "/w/lib/util.py", line 3, in helper\nZeroDivisionError: division by zero';
    const html = renderCard(card({ status: 'error' }, { status: 'error', error: { type: 'ZeroDivisionError', message: 'division by zero', traceback: tb, frames } }), toUri);
    assert.match(html, /<span class="error-type">ZeroDivisionError<\/span>: division by zero/);
    const links = html.match(/data-action="open-frame" data-run="r1" data-index="(\d)"/g) ?? [];
    assert.equal(links.length, 4, 'two in the frame list, two in the traceback');
    assert.match(html, /data-index="1" title="Open \/w\/lib\/util\.py:3">…\/lib\/util\.py:3<\/a> <span class="frame-name">in helper<\/span>/);
    assert.match(html, /File &quot;<a href="#" class="frame" data-action="open-frame" data-run="r1" data-index="0"/);
  });

  it('shows streamed logs, stderr marked, open while running', () => {
    const html = renderCard(card({ status: 'running', logs: [{ stream: 'stdout', text: 'step 1\n' }, { stream: 'stderr', text: 'warn\n' }] }), toUri);
    assert.match(html, /<details class="logs" open><summary>Logs \(2\)<\/summary>/);
    assert.match(html, /<span class="log-stderr">warn\n<\/span>/);
  });

  it('shows a carriage-return progress bar as one updating line, across chunks', () => {
    const logs = [
      { stream: 'stdout', text: 'epoch 1\n' },
      { stream: 'stderr', text: '\rtrain:  10%|#' },
      { stream: 'stderr', text: '\rtrain:  50%|#####' },
      { stream: 'stderr', text: '\rtrain: 100%|##########|\r\n' },
      { stream: 'stdout', text: 'done\r\n' },
    ];
    assert.deepEqual(terminalLines(logs), [
      { stream: 'stdout', text: 'epoch 1\n' },
      { stream: 'stderr', text: 'train: 100%|##########|\n' },
      { stream: 'stdout', text: 'done\n' },
    ]);
    const html = renderCard(card({ status: 'running', logs }), toUri);
    assert.match(html, /<summary>Logs \(3\)<\/summary>/);
    assert.doesNotMatch(html, /50%/);
  });

  it('has an empty state that says how to start', () => {
    assert.match(renderCards([], toUri), /No runs yet/);
  });

  it('builds a page with a strict nonce CSP: no inline scripts, no remote origins', () => {
    const csp = contentSecurityPolicy('https://webview.test', 'abc123');
    assert.match(csp, /^default-src 'none'/);
    assert.match(csp, /script-src 'nonce-abc123'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/);
    const page = renderPage({ cspSource: 'https://webview.test', nonce: 'abc123', scriptUri: 'https://webview.test/media/panel.js', styleUri: 'https://webview.test/media/panel.css', body: '<p>x</p>' });
    assert.match(page, /<script nonce="abc123" src="https:\/\/webview\.test\/media\/panel\.js"><\/script>/);
    assert.equal((page.match(/<script/g) ?? []).length, 1);
  });

  it('shows every retry the runtime made: "retried 1x: worker crashed", each error in the tooltip', () => {
    const crash = { attempt: 1, reason: 'worker crashed', type: 'WorkerCrashed', message: 'the worker exited with code 3', gpu: 'H100' };
    const html = renderCard(card({}, { text: 'ok', retries: [crash] }), toUri);
    assert.match(html, /<div class="retries" title="attempt 1 on H100: WorkerCrashed: the worker exited with code 3">retried 1x: worker crashed<\/div>/);
    const oom = { attempt: 2, reason: 'CUDA out of memory on H100, moved to A100-80GB', type: 'torch.OutOfMemoryError', message: 'CUDA out of memory', gpu: 'H100', movedTo: 'A100-80GB' };
    assert.equal(retrySummary([crash, { ...crash, attempt: 2 }, oom]), 'retried 3x: worker crashed, CUDA out of memory on H100, moved to A100-80GB');
    assert.doesNotMatch(renderCard(card({}, { text: 'ok' }), toUri), /retried/, 'no retries, no line');
    const xss = renderCard(card({}, { status: 'error', retries: [{ ...crash, reason: XSS, message: XSS }] }), toUri);
    assertNoInjectedMarkup(xss);
  });

  it('warns on a card whose endpoint keeps objects running old code, with a "Rebuild kept model" button (run and index, no path)', () => {
    const warning = { kind: 'kept-stale' as const, message: "kept 'gpt' (model.GPT) still runs its old code: GPT.__init__ changed", endpoint: 'greet', keys: ["'gpt'"] };
    const html = renderCard(card({}, { text: 'v1', warnings: [warning] }), toUri);
    assert.match(html, /<section class="warnings"><div class="warning warning-kept-stale"><span class="warning-text">⚠ kept &#39;gpt&#39; \(model\.GPT\) still runs its old code: GPT\.__init__ changed<\/span>/);
    assert.match(html, /<button class="rebuild" data-action="rebuild-kept" data-run="r1" data-index="0" title="Load &#39;gpt&#39; of greet again with the saved code and re-run setup\(\)">Rebuild kept model<\/button>/);
    assert.doesNotMatch(renderCard(card({}, { text: 'v1' }), toUri), /rebuild-kept|warnings/, 'no warning, no button');
    const xss = renderCard(card({}, { text: 'x', warnings: [{ ...warning, message: XSS, endpoint: XSS, keys: [XSS] }] }), toUri);
    assertNoInjectedMarkup(xss);
  });

  it('formats durations and costs', () => {
    assert.equal(formatDuration(0.0042), '4 ms');
    assert.equal(formatDuration(0.4213), '0.42 s');
    assert.equal(formatDuration(12.34), '12.3 s');
    assert.equal(formatDuration(125), '2 m 05 s');
    assert.equal(formatCost(0), '$0.0000');
    assert.equal(formatCost(0.0031), '$0.0031');
    assert.equal(formatCost(0.0000116), '$0.000012');
  });
});
