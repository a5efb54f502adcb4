module.exports = {
  displayName: 'swarm',
  preset: '../../jest.preset.js',
  rootDir: '.',
};
