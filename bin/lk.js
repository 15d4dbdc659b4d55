#!/usr/bin/env node
// Entry point of the `lk` command. TypeScript sources run through tsx's loader, so that a
// clone works after `npm install` with no build step.
import { register } from 'tsx/esm/api';

register();
await import('../cli/main.ts');
