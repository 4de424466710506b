/**
 * The Slipstream LSP contract, mirrored from docs/lsp-protocol.md (Python source of truth:
 * daemon/slipstream_daemon/protocol.py). A unit test parses the doc's tables so drift fails.
 */

/** Server commands, sent with workspace/executeCommand; each takes one argument object. */
export const ServerCommand = {
  run: 'slipstream.server.run',
  modelAlternatives: 'slipstream.server.modelAlternatives',
  applyModel: 'slipstream.server.applyModel',
  swapModel: 'slipstream.server.swapModel',
  selectRuntime: 'slipstream.server.selectRuntime',
  runtimeStatus: 'slipstream.server.runtimeStatus',
  deploy: 'slipstream.server.deploy',
  listEndpoints: 'slipstream.server.listEndpoints',
  debug: 'slipstream.server.debug',
  rebuildKept: 'slipstream.server.rebuildKept',
} as const;

/** Notifications from the server to the client. */
export const Notification = {
  runStarted: 'slipstream/runStarted',
  runLog: 'slipstream/runLog',
  runResult: 'slipstream/runResult',
  deployResult: 'slipstream/deployResult',
  runtimeStatus: 'slipstream/runtimeStatus',
} as const;

/** The extension's own commands (contributed in package.json). */
export const ClientCommand = {
  runEndpoint: 'slipstream.runEndpoint',
  swapModel: 'slipstream.swapModel',
  selectRuntime: 'slipstream.selectRuntime',
  showStatus: 'slipstream.showStatus',
  openOutputs: 'slipstream.openOutputs',
  restartDaemon: 'slipstream.restartDaemon',
  setToken: 'slipstream.setToken',
  connectMachine: 'slipstream.connectMachine',
  disconnectMachine: 'slipstream.disconnectMachine',
  debugEndpoint: 'slipstream.debugEndpoint',
  rebuildKept: 'slipstream.rebuildKept',
} as const;

/**
 * Server commands that VS Code does better itself: "Swap model" as a QuickPick instead of the
 * server's window/showMessageRequest fallback (same argument object).
 */
const CLIENT_OVERRIDES: Record<string, string> = {
  [ServerCommand.swapModel]: ClientCommand.swapModel,
  // the Debug lens starts a "slipstream" debug session; its adapter then calls the server command
  [ServerCommand.debug]: ClientCommand.debugEndpoint,
  // the "Rebuild kept model" quick fix: the extension's command shows the result as a notification
  [ServerCommand.rebuildKept]: ClientCommand.rebuildKept,
};

/** Points a lens's or code action's command at the extension's own version, where there is one. */
export function preferClientCommand<C extends { command: string }>(command: C): C {
  const override = CLIENT_OVERRIDES[command.command];
  if (override) command.command = override;
  return command;
}

export interface RunArgs {
  uri: string;
  endpoint: string;
  method?: string;
  kwargs?: Record<string, unknown>;
}

export interface RunStarted {
  runId: string;
  uri: string;
  endpoint: string;
  method?: string | null;
  gpu: string;
  startedAt: number | string;
  /** With [runtimes] in slipstream.toml: the runtime the run goes to. */
  runtime?: string;
}

export interface RunLog {
  runId: string;
  stream: 'stdout' | 'stderr';
  text: string;
}

export interface RunImage {
  /** PNG in the daemon's cache folder. */
  path: string;
  /** data:image/png;base64,... (at most 256 px). */
  thumbnail?: string;
  width: number;
  height: number;
}

export interface TraceFrame {
  /** Absolute local path when it maps into the workspace. */
  file: string;
  line: number;
  name: string;
}

export interface RunError {
  type: string;
  message: string;
  traceback?: string;
  frames?: TraceFrame[];
}

/** One failed attempt the runtime ran again (the endpoint's retries=, or a CUDA out-of-memory move). */
export interface RunRetry {
  attempt: number;
  /** Short: "worker crashed", "timed out", "CUDA out of memory on H100, moved to A100-80GB", "KeyError". */
  reason: string;
  type: string;
  message: string;
  /** The GPU the failed attempt ran on. */
  gpu: string;
  /** CUDA out of memory: the next GPU of the fallback list, which ran it. */
  movedTo?: string;
}

export interface RunResult {
  runId: string;
  uri: string;
  endpoint: string;
  method?: string | null;
  /** "H100", "CPU", "H100 → CPU" (a runtime without it), "H100 → A100-80GB" (moved after CUDA ran out of memory). */
  gpu: string;
  status: 'ok' | 'error';
  durationS: number;
  costUsd: number;
  text?: string | null;
  json?: unknown;
  images: RunImage[];
  logs: { stream: string; text: string }[];
  error?: RunError | null;
  /** Each failed attempt the runtime ran again; absent when there was none. */
  retries?: RunRetry[];
  /** With [runtimes] in slipstream.toml: the runtime that ran it. */
  runtime?: string;
  /** The endpoint's kept objects run old code (a reload could not apply their class's new code). */
  warnings?: RunWarning[];
}

/** A warning on a run card: kept objects of the endpoint that still run their old code. */
export interface RunWarning {
  kind: 'kept-stale';
  message: string;
  endpoint: string;
  /** The stale keep() keys, as repr ("'gpt'"). */
  keys: string[];
}

/** A kept object that still runs its old class's code after a reload. */
export interface KeptStale {
  endpoint: string;
  /** repr of the keep() key: "'gpt'". */
  key: string;
  /** Where in the kept value: "(the kept object)", "model.cfg". */
  path: string;
  /** module.qualname: "model.GPT". */
  cls: string;
  /** "GPT.__init__ changed: the kept object was built by the old one". */
  why: string;
}

/** The answer of slipstream.server.rebuildKept. */
export interface RebuildKeptResult {
  ok: boolean;
  /** One line per endpoint (and per failure or object still stale). */
  message: string;
  endpoints: {
    endpoint: string;
    workers: number;
    released: string[];
    modelLoads: number;
    rebuildS: number;
    stale: KeptStale[];
    errors: { type: string; message: string }[];
  }[];
}

export interface DeployResult {
  ok: boolean;
  generation?: string | number;
  changed: string[];
  uploaded: number;
  durationMs: number;
  error?: { type: string; message: string; file?: string; line?: number } | null;
  /** After a reload of workers holding keep() objects: how many follow the saved code, and those that cannot. */
  kept?: { updated: number; stale: KeptStale[] };
}

export interface GpuInventory {
  name: string;
  memoryGb: number;
  count: number;
}

export interface RuntimeStatus {
  /** null when no runtime is connected yet. */
  url: string | null;
  kind: 'embedded' | 'remote';
  connected: boolean;
  gpus: GpuInventory[];
  spendUsd: number;
  endpoints: number;
  /** With [runtimes] in slipstream.toml: each runtime the project routes over, in order. */
  runtimes?: RoutedRuntime[];
}

/** One runtime of a project that routes over several (docs/runtimes.md). */
export interface RoutedRuntime {
  name: string;
  /** "embedded" for the embedded runtime, else its http(s):// or ssh:// address. */
  url: string;
  kind: 'embedded' | 'remote';
  connected: boolean;
  gpus: GpuInventory[];
  spendUsd: number;
  /** The project's endpoints routed to it. */
  endpoints: string[];
}

export interface EndpointInfo {
  uri: string;
  name: string;
  /** "H100", "2x H100" or "CPU". */
  gpu: string | null;
  /** Zero-based line of the decorator. */
  line: number;
  methods: string[];
}

export interface ModelAlternative {
  id: string;
  label?: string;
  description?: string;
  paramsB?: number;
  vramGb?: number;
  fits?: boolean;
  pricePerSecond?: number;
}

export interface ModelAlternatives {
  current: string | null;
  kind: string | null;
  items: ModelAlternative[];
}
