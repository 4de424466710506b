import * as vscode from 'vscode';
import { Daemon } from './client';
import { applyRuntime, deployLine, rebuildKept, refreshStatus, runEndpoint, selectRuntime, setToken, showStatus, swapModel, type CommandContext } from './commands';
import { connectMachine, disconnectMachine } from './connect';
import { debugEndpoint, registerDebugging } from './debug';
import { createLog } from './log';
import { OutputsPanel } from './panel';
import { ClientCommand } from './protocol';
import { onInterpreterChange } from './python';
import { pythonSetting, selectedRuntime } from './settings';
import { StatusBar } from './status';

let daemon: Daemon | undefined;

/** Starts the daemon with the user's interpreter and wires the panel, status bar and commands. */
export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const log = createLog();
  log.info(`Slipstream ${context.extension.packageJSON.version} activating`);
  const panel = new OutputsPanel(context.extensionUri, log);
  const status = new StatusBar(selectedRuntime());
  daemon = new Daemon(context.secrets, log, {
    state: (s) => status.setDaemon(s),
    runStarted: (n) => panel.runStarted(n),
    runLog: (n) => panel.runLog(n),
    runResult: (r) => {
      panel.runResult(r);
      status.addRun(r);
    },
    deployResult: (r) => {
      if (r.ok) {
        const message = deployLine(r);
        log.info(message);
        // each kept object a reload left on its old code (a warning at its endpoint, with "Rebuild kept model")
        for (const s of r.kept?.stale ?? []) log.warn(`${s.endpoint}: kept ${s.key} (${s.cls}) still runs its old code: ${s.why}. Run Slipstream: Rebuild kept model.`);
        vscode.window.setStatusBarMessage(`${r.kept?.stale?.length ? '$(warning)' : '$(cloud-upload)'} Slipstream: ${message}`, r.kept?.stale?.length ? 8000 : 4000);
      } else log.warn(`Deploy failed: ${r.error?.type}: ${r.error?.message}${r.error?.file ? ` (${r.error.file}:${r.error.line})` : ''}`);
    },
    runtimeStatus: (s) => status.setRuntime(s),
  });
  const ctx: CommandContext = { daemon, panel, status, secrets: context.secrets, log };
  const d = daemon;
  const connectCtx = {
    python: () => d.interpreter?.path,
    log,
    // slipstream.toml's [runtimes] changed: the daemon asks them again; lenses and diagnostics follow
    changed: async (folder: string) => void (await refreshStatus(ctx, vscode.Uri.file(`${folder}/slipstream.toml`).toString())),
  };

  context.subscriptions.push(
    log,
    panel,
    status,
    daemon,
    vscode.commands.registerCommand(ClientCommand.runEndpoint, (arg?: unknown) => runEndpoint(ctx, arg)),
    vscode.commands.registerCommand(ClientCommand.swapModel, (arg?: unknown) => swapModel(ctx, arg)),
    vscode.commands.registerCommand(ClientCommand.selectRuntime, () => selectRuntime(ctx)),
    vscode.commands.registerCommand(ClientCommand.showStatus, () => showStatus(ctx)),
    vscode.commands.registerCommand(ClientCommand.openOutputs, () => panel.show(false)),
    vscode.commands.registerCommand(ClientCommand.restartDaemon, () => d.restart()),
    vscode.commands.registerCommand(ClientCommand.setToken, () => setToken(ctx)),
    // several runtimes (docs/runtimes.md): an ssh host becomes one of the project's runtimes
    vscode.commands.registerCommand(ClientCommand.connectMachine, (host?: string) => connectMachine(connectCtx, typeof host === 'string' ? host : undefined)),
    vscode.commands.registerCommand(ClientCommand.disconnectMachine, (name?: string) => disconnectMachine(connectCtx, typeof name === 'string' ? name : undefined)),
    vscode.commands.registerCommand(ClientCommand.debugEndpoint, (arg?: unknown) => debugEndpoint(ctx, arg)),
    vscode.commands.registerCommand(ClientCommand.rebuildKept, (arg?: unknown) => rebuildKept(ctx, arg)),
    ...registerDebugging(ctx),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('slipstream.python')) void d.restart();
      else if (e.affectsConfiguration('slipstream.runtime') || e.affectsConfiguration('slipstream.runtimes')) void applyRuntime(ctx);
    }),
  );

  // Start in the background: activation must not wait for the interpreter check.
  void d.start().then(async (ok) => {
    if (ok) await refreshStatus(ctx);
    const sub = await onInterpreterChange(() => {
      if (!pythonSetting()) void d.restart();
    });
    if (sub) context.subscriptions.push(sub);
  });
}

/** Stops the daemon. */
export async function deactivate(): Promise<void> {
  await daemon?.stop();
  daemon = undefined;
}
