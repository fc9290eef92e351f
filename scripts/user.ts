/**
 * `npm run user -- <command> [name] [options]`: manage the users who may sign in.
 *
 *   add <name>      create a user (the password is read from a prompt or from stdin)
 *   passwd <name>   set a user's password (ends the user's sessions)
 *   revoke <name>   end the user's sessions: every token issued so far is refused
 *   remove <name>   delete a user (their tokens are refused too)
 *   list [--json]   one user per line: name<TAB>createdAt (never a hash)
 *
 * By default it works on the local stack that `npm start` describes in .local/stack.json. With
 * `--stage <name>` it works on that deployed stage (table from `serverless print`, default AWS
 * credentials). `--table`, `--region` and `--endpoint` override what either would use.
 *
 * A password is never taken from the command line: on a terminal it is asked for twice with echo
 * off, otherwise the whole of stdin is the password (one trailing newline dropped), e.g.
 * `printf '%s' "$PASSWORD" | npm run user -- add alice`.
 *
 * A token stops being accepted within AUTH_USER_CACHE_SECONDS (default 30) of a passwd, revoke or
 * remove: the time a warm container may keep what it read of the user (README, "Rotation and revocation").
 *
 * Exit codes: 0 done; 1 the operation failed (user exists, no such user, AWS error); 2 bad usage
 * (bad username or password, unknown command, no stack to talk to).
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { Command, CommanderError } from 'commander';
import { hashPassword } from '../lib/auth/passwords.ts';
import { UserExistsError, UserNotFoundError, UserStore, type UserSummary } from '../lib/auth/user-store.ts';
import { isValidUsername, usernameSchema } from '../lib/auth/usernames.ts';
import { localCredentials, projectRoot, resolveService, type StackInfo } from './local-stack.ts';

export const DEFAULT_STACK_FILE = join(projectRoot, '.local', 'stack.json');
export const MIN_PASSWORD_LENGTH = 8;
/** POST /auth/signin accepts at most this many characters; a longer password could never sign in. */
export const MAX_PASSWORD_LENGTH = 1024;

/** Bad input or nothing to talk to: exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}
/** The operation was refused or failed: exit code 1. */
export class OperationError extends Error {
  override name = 'OperationError';
}

// ---------------------------------------------------------------------------------------------
// Input checks

export function checkUsername(name: string): string {
  if (!isValidUsername(name)) {
    const rule = usernameSchema.safeParse(name).error?.issues[0]?.message ?? 'not allowed';
    throw new UsageError(`invalid username ${JSON.stringify(name)}: ${rule}`);
  }
  return name;
}

export function checkPassword(password: string): string {
  if (password.length === 0) throw new UsageError('the password is empty');
  if ([...password].length < MIN_PASSWORD_LENGTH)
    throw new UsageError(`the password is too short: at least ${MIN_PASSWORD_LENGTH} characters`);
  if (password.length > MAX_PASSWORD_LENGTH)
    throw new UsageError(`the password is too long: at most ${MAX_PASSWORD_LENGTH} characters`);
  return password;
}

/** Drops exactly one trailing line ending (`\n` or `\r\n`), as `echo` or a here-string adds. */
export const stripOneNewline = (text: string) => text.replace(/\r?\n$/, '');

// ---------------------------------------------------------------------------------------------
// Reading the password

export type PasswordInput = Readable & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown };

async function readAll(input: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of input) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString('utf8');
}

/** One line from a terminal without echoing it. Ctrl-C or Ctrl-D abort. */
export function promptHidden(question: string, input: PasswordInput, output: Writable): Promise<string> {
  output.write(question);
  // readline echoes what is typed to its output; give it one that swallows everything.
  const muted = new Writable({ write: (_chunk, _encoding, done) => done() });
  const rl = createInterface({ input, output: muted, terminal: true });
  return new Promise<string>((resolve, reject) => {
    let answered = false;
    rl.on('SIGINT', () => rl.close());
    rl.on('close', () => {
      output.write('\n');
      if (!answered) reject(new UsageError('no password given'));
    });
    rl.question('', (answer) => {
      answered = true;
      resolve(answer);
      rl.close();
    });
  });
}

/**
 * The new password: asked twice on a terminal (with echo off), otherwise the whole of `input` minus
 * one trailing newline. Checked for length either way.
 */
export async function readPassword(
  input: PasswordInput,
  output: Writable,
  username: string,
): Promise<string> {
  if (!input.isTTY) return checkPassword(stripOneNewline(await readAll(input)));
  const first = checkPassword(await promptHidden(`new password for ${username}: `, input, output));
  const second = await promptHidden('again: ', input, output);
  if (first !== second) throw new UsageError('the passwords do not match');
  return first;
}

// ---------------------------------------------------------------------------------------------
// Where the users table is

export interface TargetOptions {
  stage?: string | undefined;
  region?: string | undefined;
  table?: string | undefined;
  endpoint?: string | undefined;
}

export interface Target {
  /** What to call it in messages: `local` or the stage name. */
  stage: string;
  table: string;
  region: string;
  /** Undefined: the region's real DynamoDB endpoint. */
  endpoint?: string | undefined;
  /** Undefined: the SDK's default credential chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string } | undefined;
}

export const NO_LOCAL_STACK = 'no local stack: run `npm start` first, or pass --stage <name>';

export interface TargetDependencies {
  stackFile?: string;
  resolve?: typeof resolveService;
}

export async function resolveTarget(options: TargetOptions, deps: TargetDependencies = {}): Promise<Target> {
  const { stackFile = DEFAULT_STACK_FILE, resolve = resolveService } = deps;
  if (options.stage && options.stage !== 'local') {
    let { table, region } = options;
    if (!table || !region) {
      let service: Awaited<ReturnType<typeof resolveService>>;
      try {
        service = await resolve(options.stage);
      } catch (error) {
        const detail = String((error as { stderr?: string }).stderr || (error as Error).message).trim();
        throw new OperationError(
          `cannot resolve stage ${options.stage} with serverless print: ${detail.split('\n')[0]}`,
        );
      }
      table ??= service.provider.environment.USERS_TABLE;
      region ??= service.provider.region;
    }
    if (!table) throw new UsageError(`stage ${options.stage} defines no USERS_TABLE; pass --table`);
    return { stage: options.stage, table, region: region!, endpoint: options.endpoint };
  }

  let stack: StackInfo | undefined;
  if (existsSync(stackFile)) {
    try {
      stack = JSON.parse(readFileSync(stackFile, 'utf8')) as StackInfo;
    } catch {
      throw new UsageError(`${stackFile} is not valid JSON: restart \`npm start\``);
    }
  }
  const table = options.table ?? stack?.tables?.users;
  const endpoint = options.endpoint ?? stack?.dynamodbEndpoint;
  if (!table || !endpoint) throw new UsageError(NO_LOCAL_STACK);
  return {
    stage: 'local',
    table,
    endpoint,
    region: options.region ?? stack?.region ?? 'us-east-1',
    credentials: {
      accessKeyId: localCredentials.AWS_ACCESS_KEY_ID,
      secretAccessKey: localCredentials.AWS_SECRET_ACCESS_KEY,
    },
  };
}

/** A UserStore on the target with its own client; call `close` when done. */
export function openStore(target: Target) {
  const client = new DynamoDBClient({
    region: target.region,
    ...(target.endpoint ? { endpoint: target.endpoint } : {}),
    ...(target.credentials ? { credentials: target.credentials } : {}),
  });
  return {
    store: new UserStore(DynamoDBDocumentClient.from(client), target.table),
    close: () => client.destroy(),
  };
}

// ---------------------------------------------------------------------------------------------
// The commands

export type Hasher = (password: string) => Promise<string>;
export type PasswordSource = () => Promise<string>;

/** Creates `username`. Checks first that the name is free, so no one types a password in vain. */
export async function addUser(
  store: UserStore,
  username: string,
  password: PasswordSource,
  hash: Hasher = hashPassword,
): Promise<UserSummary> {
  checkUsername(username);
  if (await store.get(username)) throw new UserExistsError(`user ${username} exists`);
  const {
    passwordHash: _hash,
    tokenVersion: _version,
    ...user
  } = await store.create(username, await hash(await password()));
  return user;
}

export async function changePassword(
  store: UserStore,
  username: string,
  password: PasswordSource,
  hash: Hasher = hashPassword,
): Promise<void> {
  checkUsername(username);
  if (!(await store.get(username))) throw new UserNotFoundError(`no user ${username}`);
  await store.setPassword(username, await hash(await password()));
}

export async function revokeUser(store: UserStore, username: string): Promise<void> {
  checkUsername(username);
  await store.revokeTokens(username);
}

export async function removeUser(store: UserStore, username: string): Promise<void> {
  checkUsername(username);
  await store.remove(username);
}

export function formatUsers(users: UserSummary[], json: boolean): string {
  if (json) {
    const rows = users.map(({ username, createdAt, updatedAt }) => ({ username, createdAt, updatedAt }));
    return `${JSON.stringify(rows, null, 2)}\n`;
  }
  return users.map((user) => `${user.username}\t${user.createdAt}\n`).join('');
}

/** One line for the terminal: no stack traces, and a hint when the local emulator is gone. */
export function describeError(error: unknown, target?: Target): string {
  const err = error as Error & { code?: string; errors?: { code?: string }[] };
  const codes = [err?.code, ...(err?.errors ?? []).map((inner) => inner.code)];
  if (codes.includes('ECONNREFUSED') && target?.endpoint) {
    const hint = target.stage === 'local' ? ': is `npm start` running?' : '';
    return `cannot reach DynamoDB at ${target.endpoint}${hint}`;
  }
  if (err?.name === 'ResourceNotFoundException' && target)
    return `table ${target.table} not found in ${target.region}`;
  const message = err instanceof Error ? err.message || err.name : String(error);
  return message.split('\n')[0]!.trim();
}

export function exitCodeFor(error: unknown): number {
  return error instanceof UsageError ? 2 : 1;
}

// ---------------------------------------------------------------------------------------------
// The command line

export interface Io {
  stdin: PasswordInput;
  stdout: Writable;
  stderr: Writable;
}

const defaultIo = (): Io => ({ stdin: process.stdin, stdout: process.stdout, stderr: process.stderr });

/** Runs one command line (arguments after the script name); resolves to the exit code. */
export async function main(args: string[], io: Io = defaultIo()): Promise<number> {
  let target: Target | undefined;
  let close = () => {};
  const withStore = async (command: Command, work: (store: UserStore) => Promise<void>) => {
    target = await resolveTarget(command.optsWithGlobals<TargetOptions>());
    const opened = openStore(target);
    close = opened.close;
    await work(opened.store);
  };
  const say = (line: string) => io.stdout.write(`${line}\n`);

  const program = new Command('npm run user --')
    .description('Manage the users who may sign in (local stack by default).')
    .option('--stage <name>', 'a deployed stage instead of the local stack')
    .option('--region <region>', 'AWS region (default: the stack or stage region)')
    .option('--table <name>', 'users table name (default: from the stack or stage)')
    .option('--endpoint <url>', 'DynamoDB endpoint (default: the local emulator, or AWS for a stage)')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
    });

  // The commands on one user: what each does, and what it says when done.
  const password = (name: string) => () => readPassword(io.stdin, io.stderr, name);
  const perUser: [string, string, (store: UserStore, name: string) => Promise<unknown>, string][] = [
    [
      'add',
      'create a user; the password comes from a prompt or stdin',
      (store, name) => addUser(store, name, password(name)),
      'added user',
    ],
    [
      'passwd',
      "set a user's password, ending their sessions; the password comes from a prompt or stdin",
      (store, name) => changePassword(store, name, password(name)),
      'changed the password of',
    ],
    [
      'revoke',
      "end a user's sessions: every token issued so far is refused",
      revokeUser,
      'revoked the tokens of',
    ],
    ['remove', 'delete a user (their tokens are refused too)', removeUser, 'removed user'],
  ];
  for (const [commandName, description, work, done] of perUser) {
    program
      .command(commandName)
      .description(description)
      .argument('<name>', 'username')
      .action(async (name: string, _options, command: Command) => {
        checkUsername(name);
        await withStore(command, async (store) => {
          await work(store, name);
          say(`${done} ${name} (${target!.stage}, table ${target!.table})`);
        });
      });
  }

  program
    .command('list')
    .description('list users: name<TAB>createdAt, one per line')
    .option('--json', 'print JSON instead')
    .action(async (options: { json?: boolean }, command: Command) => {
      await withStore(command, async (store) => {
        io.stdout.write(formatUsers(await store.list(), Boolean(options.json)));
      });
    });

  try {
    await program.parseAsync(args, { from: 'user' });
    return 0;
  } catch (error) {
    // Commander has already printed its own message (unknown command, missing argument, help).
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    io.stderr.write(`error: ${describeError(error, target)}\n`);
    return exitCodeFor(error);
  } finally {
    close();
  }
}

const isEntryPoint = () => {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href;
  } catch {
    return false;
  }
};

if (isEntryPoint()) {
  process.exitCode = await main(process.argv.slice(2));
}
