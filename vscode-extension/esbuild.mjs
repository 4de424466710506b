// Bundles the extension (dist/extension.js) and the outputs panel's script (media/panel.js).
//   node esbuild.mjs               development build, with source maps
//   node esbuild.mjs --production  minified, as packaged in the .vsix
//   node esbuild.mjs --watch
import * as esbuild from 'esbuild';

const production = process.argv.includes('--production');
const watch = process.argv.includes('--watch');

const common = {
  bundle: true,
  minify: production,
  sourcemap: production ? false : 'linked',
  logLevel: 'info',
  legalComments: 'none',
};

const builds = [
  {
    ...common,
    entryPoints: ['src/extension.ts'],
    outfile: 'dist/extension.js',
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    external: ['vscode'],
  },
  {
    ...common,
    entryPoints: ['src/panel/webview.ts'],
    outfile: 'media/panel.js',
    format: 'iife',
    platform: 'browser',
    target: 'es2022',
    sourcemap: false,
  },
];

if (watch) {
  for (const b of builds) await (await esbuild.context(b)).watch();
} else {
  await Promise.all(builds.map((b) => esbuild.build(b)));
}
