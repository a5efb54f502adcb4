module.exports = {
  displayName: 'controller',
  preset: '../../jest.preset.js',
  rootDir: '.',
  // End-to-end suites start controller processes and share one Redis.
  testTimeout: 60_000,
};
