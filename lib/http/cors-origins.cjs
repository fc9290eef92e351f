/**
 * The browser origins the service answers (CORS), for serverless.yml: `${file(./lib/http/cors-origins.cjs):api}`
 * for the HTTP API and `…:bucket` for the files bucket, which browsers PUT upload parts to directly.
 * CommonJS because that is what the framework's file variables load.
 *
 * - CORS_ALLOWED_ORIGINS, when set: a comma-separated list of origins (`https://console.example.com`,
 *   scheme and host and maybe port, no path), or `*` for any.
 * - Otherwise `*` on the stages that only ever run on this machine (`local` for npm start, `test` for
 *   the tests and the fuzzer), and no other origin on a deployed stage: its API answers only
 *   same-origin pages, and its bucket only the API's own origin (for pages the API itself serves).
 */
'use strict';

const LOCAL_STAGES = new Set(['local', 'test']);
const ORIGIN = /^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?$/;

/** The API's own origin (`https://<id>.execute-api.<region>.amazonaws.com`), as CloudFormation. */
const API_ORIGIN = { 'Fn::GetAtt': ['HttpApi', 'ApiEndpoint'] };

function corsOrigins(stage, configured) {
  const raw = (configured ?? '').trim();
  let origins;
  if (raw === '') origins = LOCAL_STAGES.has(stage) ? ['*'] : [];
  else {
    origins = [...new Set(raw.split(',').map((origin) => origin.trim().replace(/\/$/, '')))];
    const bad = origins.filter((origin) => origin !== '*' && !ORIGIN.test(origin));
    if (bad.length > 0 || (origins.includes('*') && origins.length > 1)) {
      throw new Error(
        `CORS_ALLOWED_ORIGINS must be "*" or a comma-separated list of origins such as https://console.example.com (scheme://host[:port], no path); got ${JSON.stringify(configured)}`,
      );
    }
  }
  const deployed = !LOCAL_STAGES.has(stage);
  return {
    api: origins,
    bucket: origins.includes('*') ? ['*'] : deployed ? [...origins, API_ORIGIN] : origins,
  };
}

module.exports = async ({ resolveVariable }) =>
  corsOrigins(await resolveVariable('sls:stage'), process.env.CORS_ALLOWED_ORIGINS);
module.exports.corsOrigins = corsOrigins;
