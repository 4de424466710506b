/**
 * The outputs panel's script (runs inside the webview; bundled to media/panel.js). It only
 * swaps in HTML rendered by the host, ticks the elapsed time of running cards, shows the
 * lightbox, and posts user actions back as {type, runId, index}: never paths (a card's
 * "Rebuild kept model" too: the host looks up the endpoint).
 */
declare function acquireVsCodeApi(): { postMessage(message: unknown): void };

const vscode = acquireVsCodeApi();
const runs = document.getElementById('runs') as HTMLElement;
const lightbox = document.getElementById('lightbox') as HTMLElement;
const lightboxImg = document.getElementById('lightbox-img') as HTMLImageElement;
const lightboxSave = document.getElementById('lightbox-save') as HTMLButtonElement;

function tick(): void {
  for (const el of Array.from(document.querySelectorAll<HTMLElement>('.elapsed[data-started]'))) {
    const started = Number(el.dataset.started);
    if (Number.isFinite(started)) el.textContent = `${Math.max(0, (Date.now() - started) / 1000).toFixed(1)} s`;
  }
}

function closeLightbox(): void {
  lightbox.hidden = true;
  lightboxImg.removeAttribute('src');
}

window.addEventListener('message', (event: MessageEvent) => {
  const msg = event.data as { type?: string; html?: string };
  if (msg?.type === 'cards' && typeof msg.html === 'string') {
    runs.innerHTML = msg.html;
    tick();
  }
});

document.addEventListener('click', (event) => {
  const target = (event.target as HTMLElement | null)?.closest<HTMLElement>('[data-action]');
  if (!target) {
    if (!lightbox.hidden && event.target === lightbox) closeLightbox();
    return;
  }
  const { action, run, index } = target.dataset;
  switch (action) {
    case 'open-frame':
      event.preventDefault();
      vscode.postMessage({ type: 'openFrame', runId: run, index: Number(index) });
      break;
    case 'save-image':
      vscode.postMessage({ type: 'saveImage', runId: run, index: Number(index) });
      break;
    case 'rebuild-kept':
      vscode.postMessage({ type: 'rebuildKept', runId: run, index: Number(index) });
      break;
    case 'enlarge': {
      const src = target.dataset.full;
      if (!src) break;
      lightboxImg.src = src;
      // the lightbox's Save button saves the image this thumbnail belongs to
      const save = target.closest('figure')?.querySelector<HTMLElement>('[data-action="save-image"]');
      lightboxSave.dataset.run = save?.dataset.run ?? '';
      lightboxSave.dataset.index = save?.dataset.index ?? '';
      lightboxSave.hidden = !save;
      lightbox.hidden = false;
      break;
    }
    case 'close':
      closeLightbox();
      break;
  }
});

document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && !lightbox.hidden) closeLightbox();
});

setInterval(tick, 500);
tick();
vscode.postMessage({ type: 'ready' });
