/**
 * A small fake of the `vscode` API: just what the extension's modules touch, with every UI
 * call recorded in `calls` and answers scripted in `answers`. Installed as the module `vscode`
 * by ./register (module resolution), so the modules under test import it unchanged.
 */
import * as path from 'node:path';

type Listener<T> = (e: T) => unknown;

export class EventEmitter<T> {
  private listeners: Listener<T>[] = [];
  event = (listener: Listener<T>, thisArg?: unknown, disposables?: { dispose(): void }[]) => {
    const bound = thisArg ? listener.bind(thisArg) : listener;
    this.listeners.push(bound);
    const d = { dispose: () => (this.listeners = this.listeners.filter((l) => l !== bound)) };
    disposables?.push(d);
    return d;
  };
  fire(e: T): void {
    for (const l of [...this.listeners]) l(e);
  }
  dispose(): void {
    this.listeners = [];
  }
}

export class Disposable {
  constructor(private readonly fn: () => void = () => undefined) {}
  static from(...ds: { dispose(): void }[]): Disposable {
    return new Disposable(() => ds.forEach((d) => d.dispose()));
  }
  dispose(): void {
    this.fn();
  }
}

export class Uri {
  private constructor(
    readonly scheme: string,
    readonly path: string,
    readonly authority = '',
  ) {}
  static file(p: string): Uri {
    return new Uri('file', path.resolve(p));
  }
  static parse(value: string): Uri {
    const m = /^([a-z][\w+.-]*):\/\/([^/]*)(.*)$/i.exec(value);
    return m ? new Uri(m[1], decodeURIComponent(m[3]) || '/', m[2]) : new Uri('file', value);
  }
  static joinPath(base: Uri, ...parts: string[]): Uri {
    return new Uri(base.scheme, path.posix.join(base.path, ...parts), base.authority);
  }
  get fsPath(): string {
    return this.path;
  }
  with(change: { scheme?: string; path?: string }): Uri {
    return new Uri(change.scheme ?? this.scheme, change.path ?? this.path, this.authority);
  }
  toString(): string {
    return `${this.scheme}://${this.authority}${this.path}`;
  }
}

export class Position {
  constructor(readonly line: number, readonly character: number) {}
}

export class Range {
  readonly start: Position;
  readonly end: Position;
  constructor(startLine: number, startChar: number, endLine: number, endChar: number) {
    this.start = new Position(startLine, startChar);
    this.end = new Position(endLine, endChar);
  }
}

export class ThemeColor {
  constructor(readonly id: string) {}
}

export class CodeAction {
  command?: { command: string; title: string; arguments?: unknown[] };
  constructor(readonly title: string) {}
}

export enum ViewColumn { Active = -1, Beside = -2, One = 1, Two = 2 }
export enum StatusBarAlignment { Left = 1, Right = 2 }
export enum ConfigurationTarget { Global = 1, Workspace = 2, WorkspaceFolder = 3 }
export enum QuickPickItemKind { Separator = -1, Default = 0 }

/** Every UI call, in order: [name, ...args]. */
export const calls: [string, ...unknown[]][] = [];
/** Scripted answers for dialogs: showSaveDialog, showQuickPick, showErrorMessage, ... */
export const answers: Record<string, unknown> = {};
/** Settings by "section.key". */
export const settings: Record<string, unknown> = {};
/** Installed extensions by id. */
export const installedExtensions: Record<string, unknown> = {};

/** A fake webview panel: html, messages posted, visibility you can flip. */
export class FakeWebviewPanel {
  readonly posted: unknown[] = [];
  readonly received = new EventEmitter<unknown>();
  readonly viewState = new EventEmitter<{ webviewPanel: FakeWebviewPanel }>();
  readonly disposed = new EventEmitter<void>();
  visible = true;
  iconPath: unknown;
  revealed = 0;
  readonly webview: {
    html: string;
    options: { enableScripts?: boolean; localResourceRoots?: Uri[] };
    cspSource: string;
    asWebviewUri(uri: Uri): Uri;
    postMessage(m: unknown): Promise<boolean>;
    onDidReceiveMessage: EventEmitter<unknown>['event'];
  };
  htmlSets = 0;
  constructor(readonly viewType: string, readonly title: string, options: { enableScripts?: boolean; localResourceRoots?: Uri[] }) {
    let html = '';
    const self = this;
    this.webview = {
      get html() {
        return html;
      },
      set html(v: string) {
        html = v;
        self.htmlSets++;
      },
      options,
      cspSource: 'https://webview.test',
      asWebviewUri: (uri: Uri) => Uri.parse(`https://webview.test${uri.path}`),
      postMessage: async (m: unknown) => {
        if (!this.visible) return false; // a hidden webview drops messages
        this.posted.push(m);
        return true;
      },
      onDidReceiveMessage: this.received.event,
    };
  }
  onDidChangeViewState = (l: Listener<{ webviewPanel: FakeWebviewPanel }>, t?: unknown, d?: { dispose(): void }[]) => this.viewState.event(l, t, d);
  onDidDispose = (l: Listener<void>, t?: unknown, d?: { dispose(): void }[]) => this.disposed.event(l, t, d);
  reveal(): void {
    this.revealed++;
    this.setVisible(true);
  }
  setVisible(visible: boolean): void {
    if (this.visible === visible) return;
    this.visible = visible;
    this.viewState.fire({ webviewPanel: this });
  }
  dispose(): void {
    this.disposed.fire();
  }
}

export const panels: FakeWebviewPanel[] = [];
export const statusItems: Record<string, unknown>[] = [];

function answer(name: string, ...args: unknown[]): Promise<unknown> {
  calls.push([name, ...args]);
  const a = answers[name];
  return Promise.resolve(typeof a === 'function' ? (a as (...x: unknown[]) => unknown)(...args) : a);
}

function outputChannel(name: string) {
  const lines: string[] = [];
  const add = (level: string) => (m: string) => void lines.push(`${level} ${m}`);
  return {
    name, lines, logLevel: 2, onDidChangeLogLevel: new EventEmitter<number>().event,
    trace: add('trace'), debug: add('debug'), info: add('info'), warn: add('warn'), error: add('error'),
    append: add('append'), appendLine: add('line'), replace: () => undefined, clear: () => undefined,
    show: () => void calls.push(['showLog', name]), hide: () => undefined, dispose: () => undefined,
  };
}

export const window = {
  activeTextEditor: undefined as unknown,
  createOutputChannel: (name: string) => outputChannel(name),
  createWebviewPanel: (viewType: string, title: string, _show: unknown, options: { localResourceRoots?: Uri[] }) => {
    const p = new FakeWebviewPanel(viewType, title, options);
    panels.push(p);
    calls.push(['createWebviewPanel', viewType]);
    return p;
  },
  createStatusBarItem: (id: string, alignment: StatusBarAlignment, priority: number) => {
    const item: Record<string, unknown> = { id, alignment, priority, text: '', show: () => undefined, dispose: () => undefined };
    statusItems.push(item);
    return item;
  },
  showTextDocument: (doc: unknown, options: unknown) => answer('showTextDocument', doc, options),
  showSaveDialog: (o: unknown) => answer('showSaveDialog', o),
  showOpenDialog: (o: unknown) => answer('showOpenDialog', o),
  showErrorMessage: (m: string, ...items: string[]) => answer('showErrorMessage', m, ...items),
  showWarningMessage: (m: string, ...items: string[]) => answer('showWarningMessage', m, ...items),
  showInformationMessage: (m: string, ...items: string[]) => answer('showInformationMessage', m, ...items),
  showQuickPick: (items: unknown, o: unknown) => answer('showQuickPick', items, o),
  showInputBox: (o: unknown) => answer('showInputBox', o),
  createTerminal: (name: string) => ({ show: () => undefined, sendText: (t: string) => void calls.push(['terminal', name, t]) }),
};

export const workspace = {
  workspaceFolders: undefined as { uri: Uri; name: string; index: number }[] | undefined,
  getWorkspaceFolder: (_uri: Uri) => workspace.workspaceFolders?.[0],
  getConfiguration: (section?: string) => ({
    get: <T>(key: string, fallback?: T): T | undefined => {
      const full = section ? `${section}.${key}` : key;
      return (full in settings ? settings[full] : fallback) as T | undefined;
    },
    update: async (key: string, value: unknown, target?: unknown) => {
      calls.push(['updateSetting', section ? `${section}.${key}` : key, value, target]);
      settings[section ? `${section}.${key}` : key] = value;
    },
  }),
  openTextDocument: (uri: Uri) => answer('openTextDocument', uri).then((v) => v ?? { uri }),
  asRelativePath: (uri: Uri) => uri.fsPath,
  fs: { copy: (from: Uri, to: Uri, o: unknown) => answer('fs.copy', from, to, o) },
  onDidChangeConfiguration: new EventEmitter<unknown>().event,
  createFileSystemWatcher: () => ({ dispose: () => undefined }),
};

export const extensions = {
  getExtension: (id: string) => installedExtensions[id],
};

export const commands = {
  registerCommand: (id: string) => {
    calls.push(['registerCommand', id]);
    return new Disposable();
  },
  executeCommand: (id: string, ...args: unknown[]) => answer(`command:${id}`, ...args),
};

/** Clears recorded calls, answers, settings, panels and extensions between tests. */
export function reset(): void {
  calls.length = 0;
  panels.length = 0;
  statusItems.length = 0;
  for (const o of [answers, settings, installedExtensions]) for (const k of Object.keys(o)) delete (o as Record<string, unknown>)[k];
  window.activeTextEditor = undefined;
  workspace.workspaceFolders = undefined;
}
