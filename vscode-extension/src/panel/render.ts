/**
 * Pure HTML rendering for the outputs panel: one card per run, newest first. Every value that
 * came from the daemon or from user code is escaped here; the page's CSP forbids inline
 * scripts and handlers besides the nonce'd panel script, so markup in outputs stays text.
 */
import type { RunImage, RunResult, RunRetry, TraceFrame } from '../protocol';

/** The label of a card's button that rebuilds the kept objects it warns about. */
export const REBUILD_LABEL = 'Rebuild kept model';

/** A run as the panel keeps it: started, possibly with streamed logs, possibly finished. */
export interface RunCard {
  runId: string;
  uri: string;
  endpoint: string;
  method?: string | null;
  gpu: string;
  /** The runtime it runs on, when the project routes over several ([runtimes]). */
  runtime?: string;
  /** Epoch milliseconds. */
  startedAt: number;
  status: 'running' | 'ok' | 'error';
  logs: { stream: string; text: string }[];
  result?: RunResult;
}

/** How the page loads its own resources and images. */
export interface PageOptions {
  cspSource: string;
  nonce: string;
  scriptUri: string;
  styleUri: string;
  /** The cards' HTML (renderCards). */
  body: string;
}

/** Turns a local image path into a URI the webview may load (webview.asWebviewUri). */
export type ImageUri = (path: string) => string | undefined;

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** "4 ms", "0.42 s", "2.70 s", "12.3 s", "2 m 05 s". */
export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '';
  if (seconds < 0.1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 10) return `${seconds.toFixed(2)} s`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  return `${m} m ${String(Math.round(seconds - m * 60)).padStart(2, '0')} s`;
}

/** "$0.0031"; sub-cent-hundredth amounts keep two significant digits ("$0.000012"). */
export function formatCost(usd: number | undefined): string {
  if (usd === undefined || !Number.isFinite(usd)) return '';
  if (usd > 0 && usd < 0.0001) return `$${usd.toPrecision(2).replace(/e.*$/, '')}`;
  return `$${usd.toFixed(4)}`;
}

/** JSON pretty-printed with two spaces, escaped, with spans for keys, strings, numbers, literals. */
export function renderJson(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value, null, 2) ?? 'undefined';
  } catch {
    text = String(value);
  }
  const token = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
  let out = '';
  let last = 0;
  for (let m = token.exec(text); m; m = token.exec(text)) {
    out += escapeHtml(text.slice(last, m.index));
    if (m[1] !== undefined) {
      out += m[2] !== undefined
        ? `<span class="j-key">${escapeHtml(m[1])}</span>${escapeHtml(m[2])}`
        : `<span class="j-str">${escapeHtml(m[1])}</span>`;
    } else if (m[3] !== undefined) out += `<span class="j-lit">${m[3]}</span>`;
    else out += `<span class="j-num">${escapeHtml(m[4])}</span>`;
    last = m.index + m[0].length;
  }
  return out + escapeHtml(text.slice(last));
}

function frameLink(runId: string, index: number, frame: TraceFrame, label: string): string {
  return (
    `<a href="#" class="frame" data-action="open-frame" data-run="${escapeHtml(runId)}" data-index="${index}" ` +
    `title="Open ${escapeHtml(frame.file)}:${escapeHtml(frame.line)}">${label}</a>`
  );
}

/** The traceback text, escaped, with each `File "...", line N` that matches a frame made a link. */
export function renderTraceback(runId: string, traceback: string, frames: TraceFrame[]): string {
  return traceback
    .split('\n')
    .map((line) => {
      const m = /^(\s*File ")(.+)(", line )(\d+)(.*)$/.exec(line);
      if (!m) return escapeHtml(line);
      const index = frames.findIndex((f) => f.line === Number(m[4]) && (f.file === m[2] || f.file.endsWith(m[2]) || m[2].endsWith(f.file)));
      if (index < 0) return escapeHtml(line);
      return escapeHtml(m[1]) + frameLink(runId, index, frames[index], `${escapeHtml(m[2])}${escapeHtml(m[3])}${m[4]}`) + escapeHtml(m[5]);
    })
    .join('\n');
}

function shortPath(file: string): string {
  const parts = file.split(/[\\/]/);
  return parts.length > 3 ? `…/${parts.slice(-2).join('/')}` : file;
}

function renderError(card: RunCard, result: RunResult): string {
  const error = result.error;
  if (!error) return '';
  const frames = error.frames ?? [];
  const list = frames.length
    ? `<ol class="frames">${frames
        .map((f, i) => `<li>${frameLink(card.runId, i, f, `${escapeHtml(shortPath(f.file))}:${escapeHtml(f.line)}`)} <span class="frame-name">in ${escapeHtml(f.name)}</span></li>`)
        .join('')}</ol>`
    : '';
  const tb = error.traceback
    ? `<details class="traceback"><summary>Traceback</summary><pre>${renderTraceback(card.runId, error.traceback, frames)}</pre></details>`
    : '';
  return `<section class="error"><div class="error-title"><span class="error-type">${escapeHtml(error.type)}</span>: ${escapeHtml(error.message)}</div>${list}${tb}</section>`;
}

function renderImages(card: RunCard, images: RunImage[], imageUri: ImageUri): string {
  if (!images.length) return '';
  const figures = images.map((img, i) => {
    const full = imageUri(img.path);
    const thumb = img.thumbnail?.startsWith('data:image/') ? img.thumbnail : full;
    const alt = `${card.endpoint} output ${i + 1} (${img.width}×${img.height})`;
    return (
      `<figure class="image">` +
      `<button class="thumb" data-action="enlarge" data-full="${escapeHtml(full ?? thumb ?? '')}" title="Click to enlarge">` +
      `<img src="${escapeHtml(thumb ?? '')}" alt="${escapeHtml(alt)}" data-width="${escapeHtml(img.width)}" data-height="${escapeHtml(img.height)}"></button>` +
      `<figcaption>${escapeHtml(img.width)}×${escapeHtml(img.height)} ` +
      `<button class="save" data-action="save-image" data-run="${escapeHtml(card.runId)}" data-index="${i}">Save…</button></figcaption>` +
      `</figure>`
    );
  });
  return `<section class="gallery">${figures.join('')}</section>`;
}

/** "retried 1x: worker crashed" (distinct reasons, in order); each attempt's error in the tooltip. */
export function retrySummary(retries: readonly RunRetry[] | undefined): string {
  if (!retries?.length) return '';
  const reasons = [...new Set(retries.map((r) => r.reason || r.type || 'failed'))];
  return `retried ${retries.length}x: ${reasons.join(', ')}`;
}

function renderRetries(result: RunResult): string {
  const summary = retrySummary(result.retries);
  if (!summary) return '';
  const detail = (result.retries ?? []).map((r) => `attempt ${r.attempt} on ${r.gpu || 'CPU'}: ${r.type}: ${r.message}`).join('\n');
  return `<div class="retries" title="${escapeHtml(detail)}">${escapeHtml(summary)}</div>`;
}

/** Kept objects that run old code: each warning with a button that rebuilds them (run and index, no path). */
function renderWarnings(card: RunCard, result: RunResult): string {
  const warnings = result.warnings ?? [];
  if (!warnings.length) return '';
  const items = warnings.map((w, i) => {
    const keys = w.keys?.length ? w.keys.join(', ') : 'its kept objects';
    return (
      `<div class="warning warning-${escapeHtml(w.kind)}"><span class="warning-text">⚠ ${escapeHtml(w.message)}</span> ` +
      `<button class="rebuild" data-action="rebuild-kept" data-run="${escapeHtml(card.runId)}" data-index="${i}" ` +
      `title="Load ${escapeHtml(keys)} of ${escapeHtml(w.endpoint)} again with the saved code and re-run setup()">${REBUILD_LABEL}</button></div>`
    );
  });
  return `<section class="warnings">${items.join('')}</section>`;
}

type LogLine = { stream: string; text: string };

/** The lines a terminal would show for this output: a carriage return (a progress bar such as
 * tqdm redrawing itself) goes back to the start of its line, so a bar is one updating line.
 * Output arrives in chunks that may split a line: a line belongs to the stream that began it. */
export function terminalLines(logs: readonly LogLine[]): LogLine[] {
  const out: LogLine[] = [];
  let cur: LogLine | null = null;
  for (const l of logs) {
    const text = l.text;
    for (let i = 0; i < text.length; i++) {
      const ch = text[i];
      if (ch === '\n') {
        cur ??= { stream: l.stream, text: '' };
        cur.text += '\n';
        out.push(cur);
        cur = null;
      } else if (ch === '\r') {
        if (text[i + 1] !== '\n' && cur) cur.text = '';
      } else {
        cur ??= { stream: l.stream, text: '' };
        cur.text += ch;
      }
    }
  }
  if (cur) out.push(cur);
  return out;
}

function renderLogs(card: RunCard): string {
  if (!card.logs.length) return '';
  const shown = terminalLines(card.logs);
  const lines = shown.map((l) => `<span class="log-${l.stream === 'stderr' ? 'stderr' : 'stdout'}">${escapeHtml(l.text)}</span>`);
  const open = card.status === 'running' ? ' open' : '';
  return `<details class="logs"${open}><summary>Logs (${shown.length})</summary><pre>${lines.join('')}</pre></details>`;
}

/** One card: header (endpoint, GPU, status, duration, cost), then outputs, logs, error. */
export function renderCard(card: RunCard, imageUri: ImageUri): string {
  const r = card.result;
  const name = card.method ? `${card.endpoint}.${card.method}` : card.endpoint;
  const status = card.status === 'running' ? 'running…' : card.status;
  const duration = r
    ? `<span class="meta duration" title="Duration">${escapeHtml(formatDuration(r.durationS))}</span>`
    : `<span class="meta duration elapsed" data-started="${card.startedAt}"></span>`;
  const cost = r ? `<span class="meta cost" title="Cost">${escapeHtml(formatCost(r.costUsd))}</span>` : '';
  const when = new Date(card.startedAt).toLocaleTimeString();
  const header =
    `<header><span class="endpoint">${escapeHtml(name)}</span>` +
    `<span class="badge gpu">${escapeHtml(card.gpu || 'CPU')}</span>` +
    (card.runtime ? `<span class="badge runtime" title="Runtime">${escapeHtml(card.runtime)}</span>` : '') +
    `<span class="badge status status-${card.status}">${escapeHtml(status)}</span>` +
    `${duration}${cost}<span class="when">${escapeHtml(when)}</span></header>`;
  let body = '';
  if (r) {
    body += renderRetries(r);
    body += renderWarnings(card, r);
    if (r.text !== undefined && r.text !== null && r.text !== '') body += `<section class="output text"><pre>${escapeHtml(r.text)}</pre></section>`;
    if (r.json !== undefined && r.json !== null) body += `<section class="output json"><pre>${renderJson(r.json)}</pre></section>`;
    body += renderImages(card, r.images ?? [], imageUri);
    body += renderError(card, r);
  }
  body += renderLogs(card);
  return `<article class="card card-${card.status}" data-run="${escapeHtml(card.runId)}">${header}${body}</article>`;
}

/** All cards, newest first (the caller passes them in that order), or the empty state. */
export function renderCards(cards: readonly RunCard[], imageUri: ImageUri): string {
  if (!cards.length) {
    return '<p class="empty">No runs yet. Click <b>▶ Run</b> above an endpoint, or run <b>Slipstream: Run endpoint</b> from the Command Palette.</p>';
  }
  return cards.map((c) => renderCard(c, imageUri)).join('\n');
}

/** The Content-Security-Policy: nothing by default; images, styles and the script only from the extension, images also as data: thumbnails. */
export function contentSecurityPolicy(cspSource: string, nonce: string): string {
  return [
    "default-src 'none'",
    `img-src ${cspSource} data:`,
    `style-src ${cspSource}`,
    `font-src ${cspSource}`,
    `script-src 'nonce-${nonce}'`,
  ].join('; ');
}

/** The whole webview document. */
export function renderPage(o: PageOptions): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${escapeHtml(contentSecurityPolicy(o.cspSource, o.nonce))}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${escapeHtml(o.styleUri)}">
<title>Slipstream outputs</title>
</head>
<body>
<main id="runs">${o.body}</main>
<div id="lightbox" class="lightbox" hidden><div class="lightbox-bar"><button id="lightbox-save" class="save" data-action="save-image">Save…</button><button class="close" data-action="close" title="Close (Esc)">×</button></div><img id="lightbox-img" alt="Enlarged output"></div>
<script nonce="${escapeHtml(o.nonce)}" src="${escapeHtml(o.scriptUri)}"></script>
</body>
</html>`;
}
