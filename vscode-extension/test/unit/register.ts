/**
 * Makes `require('vscode')` load ./fake-vscode (import this first in every test file). The
 * extension's sources import `vscode` as they do in the editor; only resolution changes.
 */
import Module = require('node:module');

const fake = require.resolve('./fake-vscode');
const mod = Module as unknown as { _resolveFilename: (request: string, ...rest: unknown[]) => string };
const original = mod._resolveFilename;
mod._resolveFilename = function (request: string, ...rest: unknown[]) {
  return request === 'vscode' ? fake : original.call(this, request, ...rest);
};
