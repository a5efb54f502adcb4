// Shared jest settings: ts-jest transpiles only (isolatedModules); the per-project `typecheck`
// target is what type-checks, because ts-jest no longer does (see ../shared/STACK.md).
const path = require('node:path');

module.exports = {
  testEnvironment: 'node',
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: path.join(__dirname, 'tsconfig.base.json') }],
  },
  moduleFileExtensions: ['ts', 'js', 'json'],
  moduleNameMapper: {
    '^@shoal/(.*)$': path.join(__dirname, 'libs/$1/src/index.ts'),
  },
  testMatch: ['**/?(*.)+(spec|test).ts'],
};
