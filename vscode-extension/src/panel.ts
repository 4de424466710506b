import * as crypto from 'node:crypto';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { ClientCommand, type RunLog, type RunResult, type RunStarted } from './protocol';
import { renderCards, renderPage, type RunCard } from './panel/render';

/** A message the panel's script posts back. Actions name a run and an index, never a path. */
export type PanelMessage =
  | { type: 'ready' }
  | { type: 'openFrame'; runId: string; index: number }
  | { type: 'saveImage'; runId: string; index: number }
  | { type: 'rebuildKept'; runId: string; index: number };

export const VIEW_TYPE = 'slipstream.outputs';

function toMillis(value: number | string | undefined): number {
  if (typeof value === 'number') return value < 1e11 ? value * 1000 : value; // seconds or ms
  const parsed = value ? Date.parse(value) : NaN;
  return Number.isFinite(parsed) ? parsed : Date.now();
}

/**
 * The outputs panel. The run history lives here, in the extension host, so a hidden or
 * re-created webview (no retainContextWhenHidden) is re-rendered from it when it shows again.
 */
export class OutputsPanel implements vscode.Disposable {
  private panel: vscode.WebviewPanel | undefined;
  private readonly cards: RunCard[] = [];
  private readonly imageRoots = new Set<string>();
  private dirty = false;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly log?: vscode.LogOutputChannel,
    private readonly maxRuns = 100,
  ) {}

  /** The runs, newest first. */
  get history(): readonly RunCard[] {
    return this.cards;
  }

  /** The webview panel while it exists. */
  get webviewPanel(): vscode.WebviewPanel | undefined {
    return this.panel;
  }

  /** Opens the panel (beside the editor) or reveals it. */
  show(preserveFocus = true): void {
    if (this.panel) {
      this.panel.reveal(undefined, preserveFocus);
      return;
    }
    const panel = vscode.window.createWebviewPanel(
      VIEW_TYPE,
      'Slipstream outputs',
      { viewColumn: vscode.ViewColumn.Beside, preserveFocus },
      { enableScripts: true, localResourceRoots: this.resourceRoots() },
    );
    panel.iconPath = vscode.Uri.joinPath(this.extensionUri, 'media', 'icon.svg');
    this.panel = panel;
    panel.webview.onDidReceiveMessage((m: PanelMessage) => this.handleMessage(m), undefined, this.disposables);
    panel.onDidChangeViewState((e) => {
      if (e.webviewPanel.visible && this.dirty) this.renderPage();
    }, undefined, this.disposables);
    panel.onDidDispose(() => {
      this.panel = undefined;
    }, undefined, this.disposables);
    this.renderPage();
  }

  /** A run started: a pending card on top, and the panel revealed. */
  runStarted(n: RunStarted): void {
    const existing = this.cards.find((c) => c.runId === n.runId);
    if (existing) return;
    this.cards.unshift({
      runId: n.runId,
      uri: n.uri,
      endpoint: n.endpoint,
      method: n.method,
      gpu: n.gpu,
      runtime: n.runtime,
      startedAt: toMillis(n.startedAt),
      status: 'running',
      logs: [],
    });
    this.cards.splice(this.maxRuns);
    this.show(true);
    this.update();
  }

  /** A line of a running card's stdout or stderr. */
  runLog(n: RunLog): void {
    const card = this.cards.find((c) => c.runId === n.runId);
    if (!card) return;
    card.logs.push({ stream: n.stream, text: n.text });
    this.update();
  }

  /** A run finished: its card is filled (or added, if the start was missed). */
  runResult(r: RunResult): void {
    let card = this.cards.find((c) => c.runId === r.runId);
    const missedStart = !card;
    if (!card) {
      card = { runId: r.runId, uri: r.uri, endpoint: r.endpoint, method: r.method, gpu: r.gpu, startedAt: Date.now(), status: 'running', logs: [] };
      this.cards.unshift(card);
      this.cards.splice(this.maxRuns);
    }
    card.status = r.status === 'ok' ? 'ok' : 'error';
    card.gpu = r.gpu || card.gpu;
    card.runtime = r.runtime ?? card.runtime;
    if (r.logs?.length && r.logs.length >= card.logs.length) card.logs = [...r.logs];
    card.result = r;
    const before = this.imageRoots.size;
    for (const img of r.images ?? []) this.addImageRoot(path.dirname(img.path));
    const rootsChanged = this.imageRoots.size !== before;
    const existed = this.panel !== undefined;
    if (missedStart || !existed) this.show(true); // the start revealed it already
    if (rootsChanged && existed && this.panel) {
      // new image folder: widen localResourceRoots, then render the page afresh
      this.panel.webview.options = { enableScripts: true, localResourceRoots: this.resourceRoots() };
      if (this.panel.visible) this.renderPage();
      else this.dirty = true;
    } else {
      this.update();
    }
  }

  /** Handles a message from the webview: open a traceback frame, save an image, rebuild kept objects. */
  async handleMessage(msg: PanelMessage): Promise<void> {
    try {
      if (msg.type === 'ready') {
        this.post();
      } else if (msg.type === 'openFrame') {
        await this.openFrame(msg.runId, msg.index);
      } else if (msg.type === 'saveImage') {
        await this.saveImage(msg.runId, msg.index);
      } else if (msg.type === 'rebuildKept') {
        await this.rebuildKept(msg.runId, msg.index);
      }
    } catch (err) {
      this.log?.error(`outputs panel: ${(err as Error).message}`);
      void vscode.window.showErrorMessage(`Slipstream: ${(err as Error).message}`);
    }
  }

  private async openFrame(runId: string, index: number): Promise<void> {
    const frame = this.cards.find((c) => c.runId === runId)?.result?.error?.frames?.[index];
    if (!frame) return;
    const uri = vscode.Uri.file(frame.file);
    const line = Math.max(0, (frame.line || 1) - 1);
    const doc = await vscode.workspace.openTextDocument(uri);
    await vscode.window.showTextDocument(doc, {
      viewColumn: vscode.ViewColumn.One,
      selection: new vscode.Range(line, 0, line, 0),
      preserveFocus: false,
    });
  }

  /** A card's "Rebuild kept model": the extension's command, for the endpoint and keys it names. */
  private async rebuildKept(runId: string, index: number): Promise<void> {
    const card = this.cards.find((c) => c.runId === runId);
    const warning = card?.result?.warnings?.[index];
    if (!card || !warning) return;
    await vscode.commands.executeCommand(ClientCommand.rebuildKept, { uri: card.uri, endpoint: warning.endpoint, keys: warning.keys });
  }

  private async saveImage(runId: string, index: number): Promise<void> {
    const card = this.cards.find((c) => c.runId === runId);
    const image = card?.result?.images?.[index];
    if (!card || !image) return;
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
    const name = `${card.endpoint}-${runId.slice(0, 8)}-${index + 1}.png`;
    const target = await vscode.window.showSaveDialog({
      defaultUri: folder ? vscode.Uri.joinPath(folder, name) : undefined,
      filters: { 'PNG image': ['png'] },
      saveLabel: 'Save image',
    });
    if (!target) return;
    await vscode.workspace.fs.copy(vscode.Uri.file(image.path), target, { overwrite: true });
    void vscode.window.showInformationMessage(`Saved ${target.fsPath}`);
  }

  private addImageRoot(dir: string): void {
    for (const root of this.imageRoots) {
      if (dir === root || dir.startsWith(root + path.sep)) return;
    }
    this.imageRoots.add(dir);
  }

  /** The extension's media folder and the folders the daemon's images came from: nothing else. */
  resourceRoots(): vscode.Uri[] {
    return [vscode.Uri.joinPath(this.extensionUri, 'media'), ...[...this.imageRoots].map((d) => vscode.Uri.file(d))];
  }

  private cardsHtml(webview: vscode.Webview): string {
    return renderCards(this.cards, (p) => webview.asWebviewUri(vscode.Uri.file(p)).toString());
  }

  /** Re-renders the whole document from the history (new panel, new roots, shown again). */
  private renderPage(): void {
    if (!this.panel) return;
    const webview = this.panel.webview;
    const media = (file: string) => webview.asWebviewUri(vscode.Uri.joinPath(this.extensionUri, 'media', file)).toString();
    webview.html = renderPage({
      cspSource: webview.cspSource,
      nonce: crypto.randomBytes(16).toString('base64'),
      scriptUri: media('panel.js'),
      styleUri: media('panel.css'),
      body: this.cardsHtml(webview),
    });
    this.dirty = false;
  }

  private post(): void {
    if (!this.panel) return;
    void this.panel.webview.postMessage({ type: 'cards', html: this.cardsHtml(this.panel.webview) });
    this.dirty = false;
  }

  /** Pushes the cards to a visible webview; a hidden one drops messages, so it is marked dirty. */
  private update(): void {
    if (!this.panel) return;
    if (this.panel.visible) this.post();
    else this.dirty = true;
  }

  dispose(): void {
    this.panel?.dispose();
    for (const d of this.disposables.splice(0)) d.dispose();
  }
}
