// esbuild plugins for serverless-esbuild (serverless.yml, custom.esbuild.plugins).
const { pathToFileURL } = require('node:url');

// lib/http/route-keys.ts, bundled as its value: every HTTP handler's stack imports it (for 404 and 405),
// and the route table it is computed from would bring every route's schemas, response schemas and
// summaries along (the $default function's bundle twice its size). The value is read when serverless
// starts, as are the functions made from the same table: a route added under `npm start` needs a restart.
const routeKeys = {
  name: 'route-keys',
  setup(build) {
    build.onLoad({ filter: /[\\/]lib[\\/]http[\\/]route-keys\.ts$/ }, async (args) => {
      const { ROUTE_KEYS } = await import(pathToFileURL(args.path).href);
      return { contents: `export const ROUTE_KEYS = ${JSON.stringify(ROUTE_KEYS)};`, loader: 'js' };
    });
  },
};

module.exports = [...require('./console/esbuild-plugin.cjs'), routeKeys];
