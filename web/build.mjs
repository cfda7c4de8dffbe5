// Bundles the UC Assistant's script (web/src/app.js with JsSIP from node_modules) into
// web/app.bundle.js, which is committed: the proxy serves it with no build step at run
// time. `node web/build.mjs` writes it; `--check` exits 1 when it differs from the sources.
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = (name) => fileURLToPath(new URL(name, import.meta.url));
const BUNDLE = here('app.bundle.js');

const result = await build({
  entryPoints: [here('src/app.js')], bundle: true, write: false, format: 'iife',
  minify: true, target: ['chrome100', 'firefox100', 'safari15'], legalComments: 'eof',
  logLevel: 'error',
});
const fresh = result.outputFiles[0].contents;

if (process.argv.includes('--check')) {
  const committed = await readFile(BUNDLE).catch(() => Buffer.alloc(0));
  if (!Buffer.from(fresh).equals(committed)) {
    console.error('web/app.bundle.js is not built from web/src: run `node web/build.mjs`');
    process.exit(1);
  }
} else {
  await writeFile(BUNDLE, fresh);
}
