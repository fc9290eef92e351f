import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  configDir,
  configFile,
  forgetUploads,
  readUploads,
  rememberUpload,
  removeSession,
  resolveApiUrl,
  resolveToken,
  saveSession,
  writePrivateJson,
} from '../../cli/config.ts';
import { CliError, describeError } from '../../cli/errors.ts';
import { ApiError, NetworkError } from '../../client/index.ts';

let home: string;
let env: Record<string, string>;

beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'file-jobs-cli-'));
  env = { XDG_CONFIG_HOME: join(home, 'xdg'), HOME: home };
});
afterEach(() => rmSync(home, { recursive: true, force: true }));

const mode = (path: string) => statSync(path).mode & 0o777;

describe('the CLI config file', () => {
  it('lives under XDG_CONFIG_HOME, or ~/.config when that is unset or relative', () => {
    expect(configDir(env)).toBe(join(home, 'xdg', 'file-jobs'));
    expect(configDir({ HOME: home })).toBe(join(home, '.config', 'file-jobs'));
    expect(configDir({ HOME: home, XDG_CONFIG_HOME: 'relative/dir' })).toBe(
      join(home, '.config', 'file-jobs'),
    );
  });

  it('is written with mode 0600 in a 0700 directory, whatever the umask', () => {
    const previous = process.umask(0o000);
    try {
      saveSession('http://api', { username: 'alice', token: 'secret', expiresAt: 'x' }, env);
    } finally {
      process.umask(previous);
    }
    expect(mode(configFile(env))).toBe(0o600);
    expect(mode(configDir(env))).toBe(0o700);
  });

  it('makes an existing, too open file private again when it rewrites it', () => {
    mkdirSync(configDir(env), { recursive: true });
    writeFileSync(configFile(env), '{"sessions": {}}', { mode: 0o644 });
    saveSession('http://api', { username: 'alice', token: 'secret', expiresAt: 'x' }, env);
    expect(mode(configFile(env))).toBe(0o600);
    writePrivateJson(join(configDir(env), 'other.json'), { a: 1 });
    expect(mode(join(configDir(env), 'other.json'))).toBe(0o600);
  });

  it('keeps one session per API URL; FILE_JOBS_TOKEN wins', () => {
    saveSession('http://one', { username: 'a', token: 't1', expiresAt: 'x' }, env);
    saveSession('http://two', { username: 'b', token: 't2', expiresAt: 'x' }, env);
    expect(resolveToken('http://one', env)).toBe('t1');
    expect(resolveToken('http://two', env)).toBe('t2');
    expect(resolveToken('http://one', { ...env, FILE_JOBS_TOKEN: 'from-env' })).toBe('from-env');
    expect(removeSession('http://one', env)).toBe(true);
    expect(removeSession('http://one', env)).toBe(false);
    expect(() => resolveToken('http://one', env)).toThrow(
      /not signed in to http:\/\/one: run "file-jobs login"/,
    );
    expect(JSON.parse(readFileSync(configFile(env), 'utf8')).sessions).toEqual({
      'http://two': { username: 'b', token: 't2', expiresAt: 'x' },
    });
  });

  it('says which file is broken instead of failing obscurely', () => {
    mkdirSync(configDir(env), { recursive: true });
    writeFileSync(configFile(env), '{not json');
    expect(() => resolveToken('http://one', env)).toThrow(CliError);
    expect(() => resolveToken('http://one', env)).toThrow(/config.json is not valid JSON/);
  });

  it('remembers which file an unfinished upload reads, and forgets it', () => {
    const record = {
      apiUrl: 'http://api',
      jobId: 'J1',
      path: '/data/a.bin',
      filename: 'a.bin',
      size: 10,
      mtimeMs: 1,
      startedAt: new Date().toISOString(),
    };
    rememberUpload(record, env);
    rememberUpload({ ...record, jobId: 'OLD', startedAt: '2000-01-01T00:00:00Z' }, env);
    rememberUpload({ ...record, jobId: 'J2' }, env);
    expect(Object.keys(readUploads(env).uploads).sort()).toEqual(['J1', 'J2']);
    forgetUploads(['J1'], env);
    expect(Object.keys(readUploads(env).uploads)).toEqual(['J2']);
    expect(mode(join(configDir(env), 'uploads.json'))).toBe(0o600);
  });
});

describe('the API URL', () => {
  it('comes from --api, then FILE_JOBS_API_URL, then .local/stack.json, then the default', () => {
    const project = join(home, 'project');
    mkdirSync(join(project, '.local'), { recursive: true });
    expect(resolveApiUrl(undefined, {}, project)).toEqual({
      url: 'http://127.0.0.1:3000',
      source: 'the default',
    });
    writeFileSync(join(project, '.local', 'stack.json'), JSON.stringify({ apiUrl: 'http://127.0.0.1:4555' }));
    expect(resolveApiUrl(undefined, {}, project)).toEqual({
      url: 'http://127.0.0.1:4555',
      source: '.local/stack.json',
    });
    expect(resolveApiUrl(undefined, { FILE_JOBS_API_URL: 'https://x.example/' }, project).url).toBe(
      'https://x.example',
    );
    expect(resolveApiUrl('http://flag:1/', { FILE_JOBS_API_URL: 'https://x' }, project)).toEqual({
      url: 'http://flag:1',
      source: '--api',
    });
  });
});

describe('error lines', () => {
  it('are one line, with a hint where the CLI has one', () => {
    expect(describeError(new ApiError(401, 'Unauthorized', 'the token has expired; sign in again'))).toBe(
      'the token has expired: run "file-jobs login"',
    );
    expect(
      describeError(new ApiError(401, 'InvalidCredentials', 'the username or password is wrong'), {
        command: 'login',
      }),
    ).toBe('the username or password is wrong');
    expect(
      describeError(new NetworkError('http://127.0.0.1:9/files', 'ECONNREFUSED', 'cannot reach x'), {
        apiUrl: 'http://127.0.0.1:9',
        apiSource: '--api',
      }),
    ).toBe('cannot reach x; is the service running? ("npm start") (the API URL comes from --api)');
    expect(describeError(new Error('two\nlines'))).toBe('two lines');
  });
});
