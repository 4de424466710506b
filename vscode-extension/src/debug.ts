import * as vscode from 'vscode';
import { pickEndpoint, type CommandContext } from './commands';
import { ServerCommand } from './protocol';

/**
 * The "slipstream" debug type: VS Code's own debugger on a call running in a runtime's worker.
 *
 * A session asks the daemon to start the call under debugpy on the runtime
 * (`slipstream.server.debug`); the daemon answers with a port on 127.0.0.1 where it relays DAP
 * to the runtime's authenticated WebSocket, completing the attach request with the path
 * mappings between this workspace and the worker's copy of the project. No other extension
 * is needed (code-server has no marketplace debugger here).
 */
export const DEBUG_TYPE = 'slipstream';

/** What `slipstream.server.debug` answers. */
export interface DebugStarted {
  runId: string;
  /** The daemon's relay on 127.0.0.1. */
  port: number;
  session: string;
  remoteRoot: string;
  localRoot: string;
  call: string;
}

/** The launch.json attributes of a "slipstream" configuration. */
export interface SlipstreamDebugConfiguration extends vscode.DebugConfiguration {
  /** The endpoint to call (its `example` is the argument unless `kwargs` is given). */
  endpoint?: string;
  /** A method of a class endpoint. */
  method?: string;
  kwargs?: Record<string, unknown>;
  /** The file that defines the endpoint (default: the active editor's file). */
  file?: string;
  /** Set by the Debug lens and command. */
  uri?: string;
  /** Attach to a relay already listening here (`slipstream run --debug` prints it). */
  port?: number;
}

/** A debug configuration for one endpoint (what the Debug lens starts). */
export function endpointConfiguration(uri: string, endpoint: string, method?: string | null): SlipstreamDebugConfiguration {
  return {
    type: DEBUG_TYPE,
    request: 'attach',
    name: `Debug ${endpoint}${method ? `.${method}` : ''} on the runtime`,
    uri,
    endpoint,
    ...(method ? { method } : {}),
  };
}

/** Fills in a launch.json configuration: the endpoint's file from `file` or the active editor. */
export function resolveConfiguration(config: SlipstreamDebugConfiguration, activeUri: string | undefined): SlipstreamDebugConfiguration | string {
  if (!config.type && !config.request && !config.name) {
    return 'press the Debug lens over an endpoint, or add a "slipstream" configuration to launch.json';
  }
  const out: SlipstreamDebugConfiguration = { ...config, type: DEBUG_TYPE, request: 'attach' };
  if (out.port !== undefined) {
    if (!Number.isInteger(out.port) || out.port <= 0 || out.port > 65535) return `"port" must be a TCP port number, not ${JSON.stringify(out.port)}`;
    return out;
  }
  if (!out.endpoint) return 'a "slipstream" configuration needs "endpoint" (the endpoint\'s name), or "port" to attach to `slipstream run --debug`';
  if (!out.uri) {
    if (out.file) out.uri = vscode.Uri.file(out.file).toString();
    else if (activeUri) out.uri = activeUri;
    else return `say in "file" which file defines the endpoint ${out.endpoint}`;
  }
  return out;
}

class ConfigurationProvider implements vscode.DebugConfigurationProvider {
  provideDebugConfigurations(): vscode.DebugConfiguration[] {
    return [
      { type: DEBUG_TYPE, request: 'attach', name: 'Slipstream: debug an endpoint', endpoint: 'hello', file: '${file}' },
    ];
  }

  resolveDebugConfiguration(_folder: vscode.WorkspaceFolder | undefined, config: vscode.DebugConfiguration): vscode.DebugConfiguration | undefined {
    const doc = vscode.window.activeTextEditor?.document;
    const resolved = resolveConfiguration(config as SlipstreamDebugConfiguration, doc?.languageId === 'python' ? doc.uri.toString() : undefined);
    if (typeof resolved === 'string') {
      void vscode.window.showErrorMessage(`Slipstream: ${resolved}`);
      return undefined;
    }
    return resolved;
  }
}

class AdapterFactory implements vscode.DebugAdapterDescriptorFactory {
  constructor(private readonly ctx: CommandContext) {}

  async createDebugAdapterDescriptor(session: vscode.DebugSession): Promise<vscode.DebugAdapterDescriptor> {
    const config = session.configuration as SlipstreamDebugConfiguration;
    if (config.port !== undefined) return new vscode.DebugAdapterServer(config.port, '127.0.0.1');
    const args: Record<string, unknown> = { uri: config.uri, endpoint: config.endpoint };
    if (config.method) args.method = config.method;
    if (config.kwargs) args.kwargs = config.kwargs;
    try {
      const started = await this.ctx.daemon.command<DebugStarted>(ServerCommand.debug, args);
      this.ctx.log.info(`Debug ${started.runId}: ${config.endpoint} stopped for the debugger in session ${started.session} (worker folder ${started.remoteRoot})`);
      return new vscode.DebugAdapterServer(started.port, '127.0.0.1');
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.ctx.log.error(`Debug ${config.endpoint}: ${message}`);
      throw new Error(`Slipstream could not start debugging ${config.endpoint}: ${message}`);
    }
  }
}

/** Registers the debug type's configuration provider and adapter factory. */
export function registerDebugging(ctx: CommandContext): vscode.Disposable[] {
  return [
    vscode.debug.registerDebugConfigurationProvider(DEBUG_TYPE, new ConfigurationProvider()),
    vscode.debug.registerDebugAdapterDescriptorFactory(DEBUG_TYPE, new AdapterFactory(ctx)),
  ];
}

interface EndpointRef {
  uri: string;
  endpoint: string;
  method?: string | null;
}

function isEndpointRef(arg: unknown): arg is EndpointRef {
  return typeof arg === 'object' && arg !== null && typeof (arg as EndpointRef).endpoint === 'string' && typeof (arg as EndpointRef).uri === 'string';
}

/** Slipstream: Debug endpoint (and the Debug lens): the call the Run lens makes, under the debugger. */
export async function debugEndpoint(ctx: CommandContext, arg?: unknown): Promise<void> {
  try {
    const ref: EndpointRef | undefined = isEndpointRef(arg) ? arg : await pickEndpoint(ctx, 'Slipstream: Debug endpoint');
    if (!ref) return;
    const folder = vscode.workspace.getWorkspaceFolder(vscode.Uri.parse(ref.uri)) ?? vscode.workspace.workspaceFolders?.[0];
    const ok = await vscode.debug.startDebugging(folder, endpointConfiguration(ref.uri, ref.endpoint, ref.method));
    if (!ok) ctx.log.warn(`Debug ${ref.endpoint}: the debug session did not start`);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    ctx.log.error(`Debug endpoint: ${message}`);
    void vscode.window.showErrorMessage(`Slipstream: Debug endpoint failed: ${message}`);
  }
}
