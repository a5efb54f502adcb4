module.exports = {
  displayName: 'dht',
  preset: '../../jest.preset.js',
  rootDir: '.',
};
