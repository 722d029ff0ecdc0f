/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  // The package test packs and installs the tarball; it needs `npm run prebuildify` first (`npm run test:package`).
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/package/'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.test.json' }] },
  testTimeout: 120000,
  // Native kernels already use every core; parallel jest workers would only fight over them.
  maxWorkers: 1,
};
