import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Sans-IO layers take bytes, events, randomness and the current time as inputs; they must not
// reach for sockets, timers, files, the clock or Math.random themselves (../shared/DESIGN.md,
// "Layout"). nx lints each project from its own folder, where paths are relative to it: each
// sans-IO lib's eslint.config.mjs adds `sansIo('<its pattern>')` (patterns from the root would
// match nothing there), and the root applies the same block for runs from the workspace root.
const IO_MODULES = ['fs', 'fs/promises', 'net', 'tls', 'dgram', 'http', 'https', 'http2', 'child_process', 'worker_threads', 'timers', 'timers/promises'];

export function sansIo(files) {
  return {
    files,
    rules: {
      'no-restricted-imports': [
        'error',
        { paths: IO_MODULES.flatMap((m) => [m, `node:${m}`]).map((name) => ({ name, message: 'sans-IO layer: take I/O results as inputs (adapters live in src/io)' })) },
      ],
      'no-restricted-properties': [
        'error',
        { object: 'Date', property: 'now', message: 'sans-IO layer: take the current time as a parameter' },
        { object: 'Math', property: 'random', message: 'sans-IO layer: take randomness as a parameter (seeded runs must replay)' },
      ],
      'no-restricted-globals': ['error', 'setTimeout', 'setInterval', 'setImmediate'],
    },
  };
}

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
  sansIo(['libs/torrent/src/*.ts', 'libs/wire/src/**/*.ts', 'libs/swarm/src/**/*.ts', 'libs/dht/src/**/*.ts', 'libs/topology/src/**/*.ts']),
);
