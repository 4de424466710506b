import * as vscode from 'vscode';
import {
  ExecuteCommandRequest,
  LanguageClient,
  RevealOutputChannelOn,
  State,
  type LanguageClientOptions,
  type ServerOptions,
} from 'vscode-languageclient/node';
import { Notification, preferClientCommand, type DeployResult, type RunLog, type RunResult, type RunStarted, type RuntimeStatus } from './protocol';
import { checkDaemon, daemonCommand, daemonProcessEnv, explainMissingDaemon, findInterpreter, type Interpreter } from './python';
import { daemonEnv } from './settings';

/** What the rest of the extension hears from the daemon. */
export interface DaemonEvents {
  state(state: 'starting' | 'running' | 'stopped' | 'failed'): void;
  runStarted(n: RunStarted): void;
  runLog(n: RunLog): void;
  runResult(r: RunResult): void;
  deployResult(r: DeployResult): void;
  runtimeStatus(s: RuntimeStatus): void;
}

/**
 * The language client for the daemon (`<python> -m slipstream_daemon` over stdio). Lenses,
 * hovers, diagnostics and code actions come from the server as they are; its commands
 * (`slipstream.server.*`) are registered by the client itself.
 */
export class Daemon implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private pending: Promise<boolean> | undefined;
  interpreter: Interpreter | undefined;

  constructor(
    private readonly secrets: vscode.SecretStorage,
    private readonly log: vscode.LogOutputChannel,
    private readonly events: DaemonEvents,
  ) {}

  /** True when the client is up. */
  get running(): boolean {
    return this.client?.state === State.Running;
  }

  /** Starts the daemon (once at a time); false when it cannot start, after telling the user why. */
  start(): Promise<boolean> {
    this.pending ??= this.doStart().finally(() => (this.pending = undefined));
    return this.pending;
  }

  private async doStart(): Promise<boolean> {
    this.events.state('starting');
    const scope = vscode.window.activeTextEditor?.document.uri;
    const interpreter = await findInterpreter(scope);
    this.interpreter = interpreter;
    this.log.info(`Python interpreter: ${interpreter.path} (from ${interpreter.source})`);
    const check = await checkDaemon(interpreter.path);
    if (!check.ok) {
      this.events.state('failed');
      const action = await explainMissingDaemon(interpreter, check, this.log);
      return action === 'picked' ? this.doStart() : false;
    }
    const launch = daemonCommand(interpreter.path);
    const env = daemonProcessEnv(process.env, await daemonEnv(this.secrets));
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    this.log.info(
      `Starting the daemon: ${launch.command} ${launch.args.join(' ')}` +
        (env.SLIPSTREAM_RUNTIME_URL ? ` (runtime ${env.SLIPSTREAM_RUNTIME_URL})` : ' (embedded runtime)'),
    );
    // stdio without `transport`: TransportKind.stdio would append a `--stdio` argument.
    const serverOptions: ServerOptions = { command: launch.command, args: launch.args, options: { env, cwd: folder } };
    const clientOptions: LanguageClientOptions = {
      documentSelector: [
        { scheme: 'file', language: 'python' },
        { scheme: 'untitled', language: 'python' },
        { scheme: 'file', pattern: '**/slipstream.toml' },
      ],
      outputChannel: this.log,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher('**/slipstream.toml') },
      middleware: {
        provideCodeLenses: async (document, token, next) => {
          const lenses = await next(document, token);
          lenses?.forEach((l) => l.command && preferClientCommand(l.command));
          return lenses;
        },
        resolveCodeLens: async (lens, token, next) => {
          const resolved = await next(lens, token);
          if (resolved?.command) preferClientCommand(resolved.command);
          return resolved;
        },
        provideCodeActions: async (document, range, context, token, next) => {
          const actions = await next(document, range, context, token);
          actions?.forEach((a) => {
            if (a instanceof vscode.CodeAction) a.command && preferClientCommand(a.command);
            else preferClientCommand(a);
          });
          return actions;
        },
      },
    };
    const client = new LanguageClient('slipstream', 'Slipstream daemon', serverOptions, clientOptions);
    client.onNotification(Notification.runStarted, (n: RunStarted) => this.events.runStarted(n));
    client.onNotification(Notification.runLog, (n: RunLog) => this.events.runLog(n));
    client.onNotification(Notification.runResult, (r: RunResult) => this.events.runResult(r));
    client.onNotification(Notification.deployResult, (r: DeployResult) => this.events.deployResult(r));
    client.onNotification(Notification.runtimeStatus, (s: RuntimeStatus) => this.events.runtimeStatus(s));
    client.onDidChangeState((e) => {
      if (e.newState === State.Running) this.events.state('running');
      // stopped by itself (crashed, or gave up restarting), not by stop(): say so
      else if (e.newState === State.Stopped && this.client === client) this.events.state('failed');
    });
    this.client = client;
    try {
      await client.start();
    } catch (err) {
      this.log.error(`The daemon did not start: ${(err as Error).message}`);
      this.events.state('failed');
      void vscode.window
        .showErrorMessage(`Slipstream: the daemon did not start (${interpreter.path} -m slipstream_daemon).`, 'Show log')
        .then((c) => c && this.log.show());
      return false;
    }
    this.log.info('The daemon is running.');
    this.events.state('running');
    return true;
  }

  /** Stops the daemon if it runs. */
  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client && client.state !== State.Stopped) {
      try {
        await client.stop(5000);
      } catch (err) {
        this.log.warn(`Stopping the daemon: ${(err as Error).message}`);
      }
    }
    this.events.state('stopped');
  }

  /** Stops, then starts again (a new interpreter or runtime token takes effect). */
  async restart(): Promise<boolean> {
    await this.pending?.catch(() => undefined);
    await this.stop();
    return this.start();
  }

  /** Runs a `slipstream.server.*` command with its one argument object. */
  async command<T>(command: string, arg: object = {}): Promise<T> {
    if (!this.running) {
      if (!(await this.start()) || !this.client) throw new Error('the Slipstream daemon is not running');
    }
    return (await this.client!.sendRequest(ExecuteCommandRequest.type, { command, arguments: [arg] })) as T;
  }

  dispose(): void {
    void this.stop();
  }
}
