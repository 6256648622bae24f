/**
 * Import rules checked by `npm run lint` (and so by `npm test`): no module may reach itself through its
 * imports. A circle makes load order matter and hides which layer depends on which.
 */
module.exports = {
  forbidden: [
    { name: 'no-circular', comment: 'an import circle: move what both sides need into a module of its own', severity: 'error', from: {}, to: { circular: true } },
    {
      name: 'infrastructure-reads-the-contract',
      comment: 'the CDK app defines resources from functions/contract (and the pure core); it imports no handler and no adapter, so synth builds no runtime object',
      severity: 'error',
      from: { path: '^(lib|bin/app[.]ts)' },
      to: { path: '^functions/', pathNot: '^functions/(contract|core)/' },
    },
  ],
  options: {
    // Type-only imports count: a circle of types is still a circle of meaning.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: 'node_modules' },
  },
};
