#!/usr/bin/env node
// Entry point of the `lk` command. It runs the build (dist/, made by `npm run build`, which
// `npm install` and `npm ci` run through `prepare`): plain JavaScript, no compiler at start-up.
// Without a build, or with LK_FROM_SOURCE=1 (development and the tests: the sources under test,
// not an older build), it runs the TypeScript sources through tsx's loader.
import { existsSync } from 'node:fs';

const built = new URL('../dist/cli/main.js', import.meta.url);
if (process.env.LK_FROM_SOURCE !== '1' && existsSync(built)) {
  await import(built.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../cli/main.ts');
}
