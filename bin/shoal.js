#!/usr/bin/env node
// The `shoal` command. The TypeScript sources are compiled by `npm run build`, which `npm ci`
// runs through the `prepare` script.
'use strict';
const path = require('node:path');
const entry = path.join(__dirname, '..', 'apps', 'cli', 'dist', 'main.js');
let cli;
try {
  cli = require(entry);
} catch (err) {
  if (err && err.code === 'MODULE_NOT_FOUND' && String(err.message).includes(entry)) {
    process.stderr.write('shoal: the CLI is not built yet; run "npm run build" in ' + path.dirname(__dirname) + '\n');
    process.exit(2);
  }
  throw err;
}
cli.run(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr }).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write('shoal: internal error: ' + ((err && err.stack) || String(err)) + '\n');
    process.exitCode = 2;
  },
);
