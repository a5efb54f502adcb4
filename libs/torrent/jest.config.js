module.exports = {
  displayName: 'torrent',
  preset: '../../jest.preset.js',
  rootDir: '.',
};
