module.exports = {
  displayName: 'agent',
  preset: '../../jest.preset.js',
  rootDir: '.',
  testTimeout: 60_000,
};
