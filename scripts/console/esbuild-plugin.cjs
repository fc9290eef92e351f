// The console's esbuild plugin, one of those scripts/esbuild-plugins.cjs gives serverless-esbuild
// (serverless.yml, custom.esbuild.plugins): the module
// `virtual:console-page`, which the console function imports, is the web console built from web/
// (scripts/console/build.ts) at the moment the function is bundled. Other functions never import it.
module.exports = [
  {
    name: 'console-page',
    setup(build) {
      build.onResolve({ filter: /^virtual:console-page$/ }, () => ({
        path: 'console-page',
        namespace: 'console-page',
      }));
      build.onLoad({ filter: /.*/, namespace: 'console-page' }, async () => {
        const { buildConsolePage } = await import('./build.ts');
        const { inputs, ...page } = await buildConsolePage();
        return { contents: `export default ${JSON.stringify(page)};`, loader: 'js', watchFiles: inputs };
      });
    },
  },
];
