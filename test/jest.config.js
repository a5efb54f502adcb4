module.exports = {
  displayName: 'e2e',
  preset: '../jest.preset.js',
  rootDir: '.',
  // The lab takes the machine's network namespaces, and both rollout suites use Redis database 0: one file at a time.
  maxWorkers: 1,
};
