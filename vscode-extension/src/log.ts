import * as vscode from 'vscode';

/**
 * The extension's log: a LogOutputChannel ("Slipstream"), echoed to the console when
 * CI=true so headless runs show what happened. The language client writes the daemon's
 * stderr into the same channel.
 */
export function createLog(name = 'Slipstream', echo = process.env.CI === 'true'): vscode.LogOutputChannel {
  const channel = vscode.window.createOutputChannel(name, { log: true });
  if (!echo) return channel;
  const say =
    (level: string, fn: (message: string, ...args: unknown[]) => void) =>
    (message: string | Error, ...args: unknown[]): void => {
      const text = message instanceof Error ? message.stack ?? message.message : message;
      console.log(`[${name} ${level}] ${text}`, ...args);
      fn.call(channel, text, ...args);
    };
  return {
    get name() {
      return channel.name;
    },
    get logLevel() {
      return channel.logLevel;
    },
    onDidChangeLogLevel: channel.onDidChangeLogLevel,
    trace: say('trace', channel.trace),
    debug: say('debug', channel.debug),
    info: say('info', channel.info),
    warn: say('warn', channel.warn),
    error: say('error', channel.error),
    append: (value: string) => {
      process.stdout.write(value);
      channel.append(value);
    },
    appendLine: (value: string) => {
      console.log(value);
      channel.appendLine(value);
    },
    replace: (value: string) => channel.replace(value),
    clear: () => channel.clear(),
    show: (preserveFocus?: boolean) => channel.show(preserveFocus),
    hide: () => channel.hide(),
    dispose: () => channel.dispose(),
  } as vscode.LogOutputChannel;
}
