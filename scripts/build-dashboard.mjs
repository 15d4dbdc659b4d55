#!/usr/bin/env node
// Builds the pages `lk serve` serves next to GraphQL: the dashboard (/) and the GraphQL explorer
// (GET /graphql from a browser), bundled with esbuild from the sources in serving/dashboard/ and
// npm packages only (uPlot, graphql-ws's client, GraphiQL with React), so that nothing is ever
// loaded from a CDN. Run by `npm run build` and `prepare`; serving/http/assets.ts serves the result.
//
//   node scripts/build-dashboard.mjs [--out DIR] [--dev]
//
// Output (default dist/dashboard/): index.html and explorer.html (no-cache), assets/<name>-<hash>.js
// and .css (content-hashed: cached for a year), assets/favicon.svg, and a gzip copy beside each
// script and style sheet. The new bundle is written aside and moved into place in two renames, so a
// running server never serves half of it. --dev: no minification, inline source maps.
import { build } from 'esbuild';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SRC = join(ROOT, 'serving', 'dashboard');

function parseArgs(argv) {
  const args = { out: join(ROOT, 'dist', 'dashboard'), dev: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--dev') args.dev = true;
    else if (a === '--out' && argv[i + 1]) args.out = resolve(argv[++i]);
    else {
      console.error(`build-dashboard: unknown argument ${a}; usage: node scripts/build-dashboard.mjs [--out DIR] [--dev]`);
      process.exit(2);
    }
  }
  return args;
}

/** Output file name per entry and extension, from esbuild's metafile: { 'dashboard.js': 'dashboard-AB12CD34.js', ... }. */
function outputNames(metafile, assetsDir) {
  const names = {};
  for (const [path, output] of Object.entries(metafile.outputs)) {
    if (!output.entryPoint || path.endsWith('.map')) continue;
    const file = basename(path);
    const entry = basename(output.entryPoint).replace(/\.(ts|css)$/, '');
    const ext = file.slice(file.lastIndexOf('.'));
    const logical = { main: 'dashboard', dashboard: 'dashboard', explorer: 'explorer' }[entry];
    if (!logical) throw new Error(`unexpected entry point ${output.entryPoint}`);
    names[`${logical}${ext}`] = relative(assetsDir, resolve(ROOT, path));
  }
  return names;
}

function page(template, names) {
  return readFileSync(join(SRC, template), 'utf8').replace(/\{\{([a-z]+\.(?:js|css))\}\}/g, (_, key) => {
    if (!names[key]) throw new Error(`${template} names ${key}, which the build did not produce`);
    return names[key];
  });
}

const kib = (bytes) => `${(bytes / 1024).toFixed(0)} KiB`;

async function main() {
  const { out, dev } = parseArgs(process.argv.slice(2));
  const staging = `${out}.tmp-${process.pid}`;
  const assets = join(staging, 'assets');
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(assets, { recursive: true });
  const started = Date.now();
  try {
    const result = await build({
      absWorkingDir: ROOT,
      entryPoints: [
        { in: join(SRC, 'main.ts'), out: 'dashboard' },
        { in: join(SRC, 'dashboard.css'), out: 'dashboard' },
        { in: join(SRC, 'explorer.ts'), out: 'explorer' },
        { in: join(SRC, 'explorer.css'), out: 'explorer' },
      ],
      outdir: assets,
      entryNames: '[name]-[hash]',
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: ['chrome109', 'firefox115', 'safari16'],
      minify: !dev,
      sourcemap: dev ? 'inline' : false,
      metafile: true,
      legalComments: 'linked',
      // React and friends pick their production build from this.
      define: { 'process.env.NODE_ENV': dev ? '"development"' : '"production"' },
      // Fonts inlined as data: URLs: the pages load nothing from anywhere but this server.
      loader: { '.woff': 'dataurl', '.woff2': 'dataurl', '.ttf': 'dataurl', '.svg': 'dataurl', '.png': 'dataurl' },
      logLevel: 'warning',
    });
    const names = outputNames(result.metafile, assets);
    writeFileSync(join(staging, 'index.html'), page('index.html', names));
    writeFileSync(join(staging, 'explorer.html'), page('explorer.html', names));
    copyFileSync(join(SRC, 'favicon.svg'), join(assets, 'favicon.svg'));
    const sizes = [];
    for (const file of Object.values(names)) {
      const path = join(assets, file);
      const gz = gzipSync(readFileSync(path), { level: 9 });
      writeFileSync(`${path}.gz`, gz);
      sizes.push(`${file} ${kib(statSync(path).size)} (gzip ${kib(gz.length)})`);
    }
    // Into place: the old bundle moves aside first, so `out` is always a complete bundle or absent for an instant.
    const old = `${out}.old-${process.pid}`;
    if (existsSync(out)) renameSync(out, old);
    renameSync(staging, out);
    rmSync(old, { recursive: true, force: true });
    console.log(
      `dashboard built into ${relative(process.cwd(), out) || out} in ${((Date.now() - started) / 1000).toFixed(1)} s: ${sizes.join(', ')}`,
    );
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    throw err;
  }
}

main().catch((err) => {
  console.error(`build-dashboard: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
