/**
 * `node bench/signin.ts`: what identity costs.
 *
 *   (a) POST /auth/signin over HTTP against a local stack (serverless-offline, DynamoDB Local):
 *       latency of sequential sign-ins, then throughput with concurrent streams. Each sign-in is
 *       one scrypt at OWASP parameters (N=2^17, r=8, p=1), so this is mostly scrypt.
 *   (b) token verifications per second in-process (KeyRing.verify: EdDSA signature, alg, iss, aud, exp).
 *   (c) the same through `authenticate()`, the path every protected route takes: with a real token
 *       issued by the stack's sign-in, sent again and again (the verified-token cache answers), and
 *       with a new token each call (verified in full).
 *
 * It starts its own stack (stage `bench`, free ports, a throw-away key file) and always stops it.
 * Options: --n <count> (sequential sign-ins, default 30), --streams <count> (default 2),
 * --seconds <s> (per in-process loop, default 2).
 */
import { rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { generateKeyset } from '../lib/auth/key-generation.ts';
import { KeyRing } from '../lib/auth/keys.ts';
import { signToken } from '../lib/auth/token-signer.ts';
import { DEMO_USER, type LocalStack, startLocalStack } from '../scripts/local-stack.ts';
import { stackLog } from './stack-log.ts';

const { values: flags } = parseArgs({
  options: {
    n: { type: 'string', default: '30' },
    streams: { type: 'string', default: '2' },
    seconds: { type: 'string', default: '2' },
    warmup: { type: 'string', default: '2' },
    verbose: { type: 'boolean', default: false },
  },
});
const N = Number(flags.n);
const STREAMS = Number(flags.streams);
const LOOP_MS = Number(flags.seconds) * 1000;
const WARMUP = Number(flags.warmup);

const progress = (line: string) => process.stderr.write(`${line}\n`);

/** The stack's log, shown with --verbose. */
const { remember } = stackLog(flags.verbose ?? false);

// ---------------------------------------------------------------------------------------------
// Statistics

interface Summary {
  n: number;
  mean: number;
  p50: number;
  p99: number;
  min: number;
  max: number;
}

/** Nearest-rank percentile of sorted samples (with 30 samples, p99 is the maximum). */
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;

function summarize(samples: number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    n: sorted.length,
    mean: sorted.reduce((sum, value) => sum + value, 0) / sorted.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    min: sorted[0]!,
    max: sorted.at(-1)!,
  };
}

// ---------------------------------------------------------------------------------------------
// (a) sign-in over HTTP

async function signInOnce(apiUrl: string): Promise<{ ms: number; token: string }> {
  const started = performance.now();
  const response = await fetch(`${apiUrl}/auth/signin`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(DEMO_USER),
  });
  const body = (await response.json()) as { token?: string };
  const ms = performance.now() - started;
  if (response.status !== 200 || !body.token)
    throw new Error(`sign-in failed (HTTP ${response.status}): ${JSON.stringify(body).slice(0, 300)}`);
  return { ms, token: body.token };
}

async function benchSignIn(apiUrl: string) {
  for (let i = 0; i < WARMUP; i++) await signInOnce(apiUrl);

  const sequential: number[] = [];
  const sequentialStarted = performance.now();
  let token = '';
  for (let i = 0; i < N; i++) {
    const result = await signInOnce(apiUrl);
    sequential.push(result.ms);
    token = result.token;
  }
  const sequentialWall = performance.now() - sequentialStarted;

  // The same number of sign-ins, split over concurrent streams.
  const concurrent: number[] = [];
  const perStream = Math.ceil(N / STREAMS);
  const concurrentStarted = performance.now();
  await Promise.all(
    Array.from({ length: STREAMS }, async () => {
      for (let i = 0; i < perStream; i++) concurrent.push((await signInOnce(apiUrl)).ms);
    }),
  );
  const concurrentWall = performance.now() - concurrentStarted;

  return {
    token,
    sequential: { ...summarize(sequential), perSecond: (sequential.length / sequentialWall) * 1000 },
    concurrent: { ...summarize(concurrent), perSecond: (concurrent.length / concurrentWall) * 1000 },
  };
}

// ---------------------------------------------------------------------------------------------
// (b), (c) verification in-process

/** Calls `work` back to back for `ms` milliseconds (after a short warm-up); returns calls per second. */
async function rate(work: () => Promise<unknown>, ms = LOOP_MS) {
  const warmUntil = performance.now() + Math.min(300, ms / 4);
  while (performance.now() < warmUntil) await work();
  let calls = 0;
  const started = performance.now();
  const until = started + ms;
  while (performance.now() < until) {
    await work();
    calls++;
  }
  const elapsed = performance.now() - started;
  return { calls, perSecond: (calls / elapsed) * 1000, microsEach: (elapsed / calls) * 1000 };
}

async function benchVerify() {
  const settings = { issuer: 'file-jobs/bench', audience: 'file-jobs', ttlSeconds: 3600 };
  const ring = new KeyRing(await generateKeyset());
  const token = await signToken(ring, 'bench-user', settings);
  const sign = await rate(() => signToken(ring, 'bench-user', settings));
  const verify = await rate(() => ring.verify(token, settings));
  return { sign, verify };
}

/**
 * authenticate() reads its configuration from process.env: give it the stack's handler environment.
 * Measured twice: with the token a client sends on every request (verified once, then answered from
 * the verified-token cache, lib/auth/verified-tokens.ts) and with a token it has never seen, as the
 * first request after a sign-in (tokens signed here with the stack's key, more than the cache holds).
 */
async function benchAuthenticate(stack: LocalStack, token: string) {
  Object.assign(process.env, stack.handlerEnv);
  const { authenticate } = await import('../lib/auth/authenticate.ts');
  const { currentTokenState, signingKeyRing } = await import('../lib/auth/index.ts');
  const { config } = await import('../lib/config.ts');
  const headers = { authorization: `Bearer ${token}` };
  const caller = await authenticate(headers);
  if (caller.username !== DEMO_USER.username) throw new Error(`authenticate gave ${caller.username}`);
  const seen = await rate(() => authenticate(headers));
  const ring = await signingKeyRing();
  const ver = (await currentTokenState(DEMO_USER.username))?.version;
  const fresh: string[] = [];
  for (let i = 0; i < 12_000; i++)
    fresh.push(await signToken(ring, DEMO_USER.username, config().tokens, { ver }));
  let next = 0;
  const unseen = await rate(() => authenticate({ authorization: `Bearer ${fresh[next++ % fresh.length]}` }));
  return { seen, unseen };
}

// ---------------------------------------------------------------------------------------------
// Report

const ms = (value: number) => value.toFixed(1);
const perSecond = (value: number) => Math.round(value).toLocaleString('en-US');

function table(rows: string[][]) {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows
    .map((row) =>
      row
        .map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)))
        .join('  '),
    )
    .join('\n');
}

async function main() {
  const keysFile = join(tmpdir(), `file-jobs-bench-keys-${process.pid}.json`);
  let stack: LocalStack | undefined;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await stack?.stop();
    rmSync(keysFile, { force: true });
  };
  const interrupt = () => {
    progress('\ninterrupted: stopping the stack…');
    void stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);

  try {
    progress('starting the local stack (stage bench)…');
    const started = performance.now();
    stack = await startLocalStack({ stage: 'bench', withApi: true, keysFile, log: remember });
    progress(`stack up in ${((performance.now() - started) / 1000).toFixed(1)} s: ${stack.info.apiUrl}`);

    progress(`(a) ${WARMUP} warm-up + ${N} sequential sign-ins, then ${N} over ${STREAMS} streams…`);
    const http = await benchSignIn(stack.info.apiUrl!);
    progress(`(b) sign/verify in-process, ${LOOP_MS / 1000} s each…`);
    const local = await benchVerify();
    progress(`(c) authenticate() in-process, ${LOOP_MS / 1000} s…`);
    const auth = await benchAuthenticate(stack, http.token);

    const cpu = cpus()[0];
    console.log(`
machine  ${cpu?.model ?? 'unknown CPU'}, ${cpus().length} cores (available parallelism ${availableParallelism()}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB
node     ${process.version} (${process.platform}/${process.arch})

(a) POST /auth/signin over HTTP (serverless-offline + DynamoDB Local, scrypt N=2^17 r=8 p=1)
${table([
  ['', 'n', 'p50 ms', 'p99 ms', 'mean ms', 'min ms', 'max ms', 'sign-ins/s'],
  ...(
    [
      ['sequential', http.sequential],
      [`${STREAMS} concurrent streams`, http.concurrent],
    ] as const
  ).map(([name, s]) => [
    name,
    String(s.n),
    ms(s.p50),
    ms(s.p99),
    ms(s.mean),
    ms(s.min),
    ms(s.max),
    s.perSecond.toFixed(2),
  ]),
])}

(b, c) tokens in-process (EdDSA / Ed25519, jose)
${table([
  ['', 'calls', 'per second', 'µs each'],
  ...(
    [
      ['signToken', local.sign],
      ['KeyRing.verify', local.verify],
      ['authenticate(), a token seen before', auth.seen],
      ['authenticate(), a new token each call', auth.unseen],
    ] as const
  ).map(([name, r]) => [name, String(r.calls), perSecond(r.perSecond), r.microsEach.toFixed(1)]),
])}
`);
  } finally {
    progress('stopping the stack…');
    await stop();
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
  }
}

try {
  await main();
} catch (error) {
  console.error(`bench failed: ${(error as Error).stack ?? error}`);
  process.exitCode = 1;
}
