import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Sans-IO layers take bytes, events and the current time as inputs; they must not reach for
// sockets, timers, files or the clock themselves (../shared/DESIGN.md, "Layout").
const SANS_IO = ['libs/torrent/src/*.ts', 'libs/wire/src/**/*.ts', 'libs/swarm/src/**/*.ts', 'libs/dht/src/**/*.ts', 'libs/topology/src/**/*.ts'];
const IO_MODULES = ['fs', 'fs/promises', 'net', 'tls', 'dgram', 'http', 'https', 'http2', 'child_process', 'worker_threads', 'timers', 'timers/promises'];

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', '**/coverage/**', '.nx/**', '**/*.js', '**/*.mjs', '**/*.cjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
      'no-control-regex': 'off',
      eqeqeq: ['error', 'always'],
    },
  },
  {
    files: SANS_IO,
    rules: {
      'no-restricted-imports': [
        'error',
        { paths: IO_MODULES.flatMap((m) => [m, `node:${m}`]).map((name) => ({ name, message: 'sans-IO layer: take I/O results as inputs (adapters live in src/io)' })) },
      ],
      'no-restricted-properties': ['error', { object: 'Date', property: 'now', message: 'sans-IO layer: take the current time as a parameter' }],
      'no-restricted-globals': ['error', 'setTimeout', 'setInterval', 'setImmediate'],
    },
  },
);
