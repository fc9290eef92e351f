/**
 * The local stack: emulators, the bucket and tables created from the very resource definitions that
 * serverless.yml deploys (read through `serverless print`, so there is no hand-kept copy), and
 * optionally serverless-offline serving the API. Used by `npm start` and by the test harness.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import {
  type AttributeDefinition,
  CreateTableCommand,
  DynamoDBClient,
  type GlobalSecondaryIndex,
  type KeySchemaElement,
  ResourceInUseException,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import {
  type CORSRule,
  CreateBucketCommand,
  type LifecycleRule,
  PutBucketCorsCommand,
  PutBucketEncryptionCommand,
  PutBucketLifecycleConfigurationCommand,
  PutPublicAccessBlockCommand,
  S3Client,
  type S3ClientConfig,
  type ServerSideEncryptionRule,
} from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { generateKeyset } from '../lib/auth/key-generation.ts';
import { hashPassword } from '../lib/auth/passwords.ts';
import { UserExistsError, UserStore } from '../lib/auth/user-store.ts';
import { type Emulators, freePort, spawnGroup, startEmulators, waitForHttp } from './emulators.ts';
import { type FaultProxy, startFaultProxy } from './fault-proxy.ts';

export const projectRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const serverlessBin = join(projectRoot, 'node_modules', '.bin', 'serverless');
/** A URL, so that a space in the path cannot split NODE_OPTIONS. */
const offlineBadRequests = pathToFileURL(join(projectRoot, 'scripts', 'offline-bad-requests.ts')).href;

/**
 * moto accepts any credentials; LocalStack checks presigned signatures (S3_SKIP_SIGNATURE_VALIDATION=0)
 * against the secret `test`, so that is what the local stack signs with.
 */
export const localCredentials = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' };
const localAwsCredentials = {
  accessKeyId: localCredentials.AWS_ACCESS_KEY_ID,
  secretAccessKey: localCredentials.AWS_SECRET_ACCESS_KEY,
};

/**
 * An S3 client of the local stack's S3, as tools and benches use it: path-style, the local
 * credentials, and by default no checksum the call does not require (the service's own presigning
 * setting); benches pass WHEN_SUPPORTED for the SDK's default.
 */
export function localS3Client(
  info: Pick<StackInfo, 'region' | 's3Endpoint'>,
  { requestChecksumCalculation = 'WHEN_REQUIRED' }: Pick<S3ClientConfig, 'requestChecksumCalculation'> = {},
): S3Client {
  return new S3Client({
    region: info.region,
    endpoint: info.s3Endpoint,
    forcePathStyle: true,
    credentials: localAwsCredentials,
    requestChecksumCalculation,
  });
}

export interface StackInfo {
  apiUrl?: string;
  lambdaEndpoint?: string;
  region: string;
  stage: string;
  s3Endpoint: string;
  dynamodbEndpoint: string;
  bucket: string;
  tables: { jobs: string; users: string };
  /** What serves S3 and DynamoDB (tests that need a signature-checking S3 skip on moto). */
  emulator: Emulators['kinds'];
}

export interface CfnResource {
  Type: string;
  Properties: Record<string, unknown>;
}

/** What `serverless print` gives: the parts of serverless.yml the local stack and its checks read. */
export interface ResolvedService {
  service: string;
  provider: { environment: Record<string, string>; region: string; stage: string };
  resources: { Resources: Record<string, CfnResource> };
  /** By function key; `iamRoleStatements` as serverless-iam-roles-per-function reads them. */
  functions:
    | Record<string, { iamRoleStatements?: unknown[] }>
    | Record<string, { iamRoleStatements?: unknown[] }>[];
}

/**
 * Settings for a stack that only ever runs on this machine, whatever its stage (the tests and
 * benchmarks use stages of their own): any browser origin, unless CORS_ALLOWED_ORIGINS says
 * otherwise. A deployed stage's default (the API's own origin, a CloudFormation value) means
 * nothing to a local S3.
 */
const thisMachineOnly = (env: NodeJS.ProcessEnv) => ({
  CORS_ALLOWED_ORIGINS: env.CORS_ALLOWED_ORIGINS || '*',
});

/** serverless.yml with every `${…}` variable resolved for `stage`. */
export async function resolveService(
  stage: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ResolvedService> {
  const { stdout } = await promisify(execFile)(
    serverlessBin,
    ['print', '--stage', stage, '--format', 'json'],
    {
      cwd: projectRoot,
      env: { ...env, ...localCredentials, ...thisMachineOnly(env), SLS_TELEMETRY_DISABLED: '1' },
      maxBuffer: 16 * 1024 * 1024,
    },
  );
  return JSON.parse(stdout) as ResolvedService;
}

const resourcesOfType = (service: ResolvedService, type: string) =>
  Object.values(service.resources.Resources).filter((resource) => resource.Type === type);

interface CfnBucket {
  BucketName: string;
  CorsConfiguration?: {
    CorsRules: (Omit<CORSRule, 'MaxAgeSeconds' | 'ExposeHeaders' | 'ID'> & {
      Id?: string;
      MaxAge?: number;
      ExposedHeaders?: string[];
    })[];
  };
  LifecycleConfiguration?: {
    Rules: (Omit<LifecycleRule, 'ID' | 'Filter' | 'Expiration' | 'AbortIncompleteMultipartUpload'> & {
      Id?: string;
      Prefix?: string;
      ExpirationInDays?: number | string;
      AbortIncompleteMultipartUpload?: { DaysAfterInitiation: number | string };
    })[];
  };
  BucketEncryption?: {
    ServerSideEncryptionConfiguration: (Omit<
      ServerSideEncryptionRule,
      'ApplyServerSideEncryptionByDefault'
    > & {
      ServerSideEncryptionByDefault?: ServerSideEncryptionRule['ApplyServerSideEncryptionByDefault'];
    })[];
  };
  PublicAccessBlockConfiguration?: Record<string, boolean>;
}

async function createBucket(s3: S3Client, bucket: CfnBucket) {
  const Bucket = bucket.BucketName;
  try {
    await s3.send(new CreateBucketCommand({ Bucket }));
  } catch (error) {
    if ((error as Error).name !== 'BucketAlreadyOwnedByYou') throw error;
  }
  // CloudFormation and the S3 API spell a few of these fields differently.
  if (bucket.CorsConfiguration) {
    const CORSRules = bucket.CorsConfiguration.CorsRules.map(({ Id, MaxAge, ExposedHeaders, ...rule }) => ({
      ...rule,
      ID: Id,
      MaxAgeSeconds: MaxAge,
      ExposeHeaders: ExposedHeaders,
    }));
    await s3.send(new PutBucketCorsCommand({ Bucket, CORSConfiguration: { CORSRules } }));
  }
  if (bucket.LifecycleConfiguration) {
    // Numbers from `${env:…}` variables arrive as strings: CloudFormation converts them, the S3 API does not.
    const Rules = bucket.LifecycleConfiguration.Rules.map(
      ({ Id, Prefix, ExpirationInDays, AbortIncompleteMultipartUpload, ...rule }) => ({
        ...rule,
        ID: Id,
        Filter: { Prefix: Prefix ?? '' },
        ...(ExpirationInDays === undefined ? {} : { Expiration: { Days: Number(ExpirationInDays) } }),
        ...(AbortIncompleteMultipartUpload
          ? {
              AbortIncompleteMultipartUpload: {
                DaysAfterInitiation: Number(AbortIncompleteMultipartUpload.DaysAfterInitiation),
              },
            }
          : {}),
      }),
    );
    await s3.send(new PutBucketLifecycleConfigurationCommand({ Bucket, LifecycleConfiguration: { Rules } }));
  }
  if (bucket.BucketEncryption) {
    await s3.send(
      new PutBucketEncryptionCommand({
        Bucket,
        ServerSideEncryptionConfiguration: {
          Rules: bucket.BucketEncryption.ServerSideEncryptionConfiguration.map(
            ({ ServerSideEncryptionByDefault, ...rule }) => ({
              ...rule,
              ApplyServerSideEncryptionByDefault: ServerSideEncryptionByDefault,
            }),
          ),
        },
      }),
    );
  }
  if (bucket.PublicAccessBlockConfiguration) {
    await s3.send(
      new PutPublicAccessBlockCommand({
        Bucket,
        PublicAccessBlockConfiguration: bucket.PublicAccessBlockConfiguration,
      }),
    );
  }
}

interface CfnTable {
  TableName: string;
  BillingMode?: 'PAY_PER_REQUEST' | 'PROVISIONED';
  AttributeDefinitions: AttributeDefinition[];
  KeySchema: KeySchemaElement[];
  GlobalSecondaryIndexes?: GlobalSecondaryIndex[];
  TimeToLiveSpecification?: { AttributeName: string; Enabled: boolean };
}

async function createTable(dynamodb: DynamoDBClient, table: CfnTable) {
  try {
    await dynamodb.send(
      new CreateTableCommand({
        TableName: table.TableName,
        BillingMode: table.BillingMode ?? 'PAY_PER_REQUEST',
        AttributeDefinitions: table.AttributeDefinitions,
        KeySchema: table.KeySchema,
        GlobalSecondaryIndexes: table.GlobalSecondaryIndexes,
      }),
    );
  } catch (error) {
    if (!(error instanceof ResourceInUseException)) throw error;
    return;
  }
  if (table.TimeToLiveSpecification) {
    await dynamodb.send(
      new UpdateTimeToLiveCommand({
        TableName: table.TableName,
        TimeToLiveSpecification: table.TimeToLiveSpecification,
      }),
    );
  }
}

/** Creates every S3 bucket and DynamoDB table that serverless.yml declares. Idempotent. */
export async function provisionResources(
  service: ResolvedService,
  endpoints: { s3: string; dynamodb: string },
) {
  const region = service.provider.region;
  const credentials = {
    accessKeyId: localCredentials.AWS_ACCESS_KEY_ID,
    secretAccessKey: localCredentials.AWS_SECRET_ACCESS_KEY,
  };
  const s3 = new S3Client({ region, endpoint: endpoints.s3, forcePathStyle: true, credentials });
  const dynamodb = new DynamoDBClient({ region, endpoint: endpoints.dynamodb, credentials });
  try {
    for (const bucket of resourcesOfType(service, 'AWS::S3::Bucket')) {
      await createBucket(s3, bucket.Properties as unknown as CfnBucket);
    }
    for (const table of resourcesOfType(service, 'AWS::DynamoDB::Table')) {
      await createTable(dynamodb, table.Properties as unknown as CfnTable);
    }
  } finally {
    s3.destroy();
    dynamodb.destroy();
  }
}

/** The seed app's demo user; only ever created on local stacks. */
export const DEMO_USER = { username: 'avijeet', password: 'avijeet@123' };

async function seedDemoUser(service: ResolvedService, endpoint: string) {
  const client = new DynamoDBClient({
    region: service.provider.region,
    endpoint,
    credentials: localAwsCredentials,
  });
  const users = new UserStore(DynamoDBDocumentClient.from(client), service.provider.environment.USERS_TABLE!);
  try {
    if (!(await users.get(DEMO_USER.username))) {
      await users.create(DEMO_USER.username, await hashPassword(DEMO_USER.password));
    }
  } catch (error) {
    if (!(error instanceof UserExistsError)) throw error;
  } finally {
    client.destroy();
  }
}

/** Creates the JWT signing keyset file on first use (never committed: .local/ is git-ignored). */
export async function ensureKeysFile(path: string): Promise<void> {
  if (existsSync(path)) return;
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(await generateKeyset(), null, 2)}\n`, { mode: 0o600, flag: 'wx' });
}

export interface StackOptions {
  stage?: string;
  /** Start serverless-offline too (the HTTP API); otherwise only emulators and resources. */
  withApi?: boolean;
  /** Rebuild handlers when the source changes (for `npm start`; off for tests and benchmarks). */
  watch?: boolean;
  /** JWT keyset file for the handlers; created when missing. */
  keysFile?: string;
  httpPort?: number;
  lambdaPort?: number;
  /** Extra environment for the handlers (merged over what the stack computes). */
  env?: Record<string, string>;
  log?: (line: string) => void;
  /** The folder serverless-offline reads its service from: the project's, unless a bench serves a variant. */
  servicePath?: string;
  /**
   * The handlers reach S3 and DynamoDB through TCP fault proxies (scripts/fault-proxy.ts) that the
   * caller breaks at will (`LocalStack.proxies`); `info` keeps the emulators' own endpoints.
   */
  faultProxies?: boolean;
  /**
   * Run handlers in serverless-offline's own process (`--useInProcess`) instead of its worker threads.
   * Only for `bench/routes.ts --in-process`: every function then shares one process.env.
   */
  inProcess?: boolean;
}

export interface LocalStack {
  info: StackInfo;
  /** serverless.yml resolved for the stack's stage (`serverless print`). */
  service: ResolvedService;
  /** The environment a handler sees: table and bucket names, endpoints, credentials. */
  handlerEnv: Record<string, string>;
  /** With `faultProxies`: the proxies in front of S3 and DynamoDB. */
  proxies?: { s3: FaultProxy; dynamodb: FaultProxy };
  /**
   * With `withApi`: kills serverless-offline at once (every handler and export worker in it dies
   * mid-call, as when Lambda's containers all crash), then starts it again on the same ports.
   */
  crashApi?(): Promise<void>;
  stop(): Promise<void>;
}

export async function startLocalStack(options: StackOptions = {}): Promise<LocalStack> {
  const stage = options.stage ?? 'local';
  const log = options.log ?? (() => {});
  const [emulators, service] = await Promise.all([startEmulators(process.env, log), resolveService(stage)]);
  const stops: (() => Promise<void>)[] = [() => emulators.stop()];
  const stop = async () => {
    for (const step of stops.reverse()) await step();
  };
  try {
    const keysFile = options.keysFile ?? join(projectRoot, '.local', 'jwt-keys.json');
    await Promise.all([
      provisionResources(service, { s3: emulators.s3Endpoint, dynamodb: emulators.dynamodbEndpoint }).then(
        () => seedDemoUser(service, emulators.dynamodbEndpoint),
      ),
      ensureKeysFile(keysFile),
    ]);
    const environment = service.provider.environment;
    const proxies = options.faultProxies
      ? {
          s3: await startFaultProxy(emulators.s3Endpoint),
          dynamodb: await startFaultProxy(emulators.dynamodbEndpoint),
        }
      : undefined;
    if (proxies)
      stops.push(async () => void (await Promise.all([proxies.s3.close(), proxies.dynamodb.close()])));
    // The worker is invoked through serverless-offline's Lambda API, even when S3 and DynamoDB come
    // from AWS_ENDPOINT_URL (LocalStack): pick its port now so the handlers know it.
    const lambdaPort = options.withApi ? (options.lambdaPort ?? (await freePort())) : undefined;
    const handlerEnv: Record<string, string> = {
      ...environment,
      ...localCredentials,
      AWS_REGION: service.provider.region,
      AWS_ENDPOINT_URL_S3: proxies?.s3.url ?? emulators.s3Endpoint,
      AWS_ENDPOINT_URL_DYNAMODB: proxies?.dynamodb.url ?? emulators.dynamodbEndpoint,
      JWT_KEYS_FILE: keysFile,
      ...(lambdaPort ? { AWS_ENDPOINT_URL_LAMBDA: `http://127.0.0.1:${lambdaPort}` } : {}),
      ...options.env,
    };
    const info: StackInfo = {
      region: service.provider.region,
      stage,
      s3Endpoint: emulators.s3Endpoint,
      dynamodbEndpoint: emulators.dynamodbEndpoint,
      bucket: environment.FILES_BUCKET!,
      tables: { jobs: environment.JOBS_TABLE!, users: environment.USERS_TABLE! },
      emulator: emulators.kinds,
    };
    let crashApi: (() => Promise<void>) | undefined;
    if (options.withApi) {
      let api = await startOffline(stage, handlerEnv, { ...options, lambdaPort }, log);
      stops.push(() => api.stop());
      info.apiUrl = api.apiUrl;
      info.lambdaEndpoint = api.lambdaEndpoint;
      crashApi = async () => {
        await api.crash();
        api = await startOffline(stage, handlerEnv, { ...options, lambdaPort, httpPort: api.httpPort }, log);
      };
    }
    return {
      info,
      service,
      handlerEnv,
      ...(proxies ? { proxies } : {}),
      ...(crashApi ? { crashApi } : {}),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** serverless-offline for `stage` with these handler settings (also used alone by the fault tests). */
export async function startOffline(
  stage: string,
  handlerEnv: Record<string, string>,
  options: StackOptions,
  log: (line: string) => void,
) {
  // Its own bundle folder per start: two stacks (even of one stage, in one process: jest runs test
  // files in its own process on a 2-core machine) never rebuild or delete under each other.
  const workFolder = `.esbuild-${stage}-${process.pid}-${randomUUID().slice(0, 8)}`;
  const httpPort = options.httpPort ?? (await freePort());
  const lambdaPort = options.lambdaPort ?? (await freePort());
  const child = spawnGroup(
    'serverless-offline',
    serverlessBin,
    [
      'offline',
      'start',
      '--stage',
      stage,
      '--httpPort',
      String(httpPort),
      '--lambdaPort',
      String(lambdaPort),
      ...(options.inProcess ? ['--useInProcess'] : []),
    ],
    {
      env: {
        ...process.env,
        ...thisMachineOnly(process.env),
        ...handlerEnv,
        SLS_TELEMETRY_DISABLED: '1',
        // Requests Node's HTTP parser refuses get the service's JSON error shape (see the file).
        NODE_OPTIONS: [process.env.NODE_OPTIONS, `--import=${offlineBadRequests}`].filter(Boolean).join(' '),
        ESBUILD_WORK_FOLDER: workFolder,
        // Only `npm start` rebuilds on source changes; tests and benchmarks keep the handlers they started with.
        ...(options.watch ? {} : { ESBUILD_WATCH_PATTERN: '.no-watch' }),
      },
      cwd: options.servicePath,
      log,
    },
  );
  const apiUrl = `http://127.0.0.1:${httpPort}`;
  await waitForHttp(`${apiUrl}/health`, child, 'serverless-offline', 120_000);
  const removeBundles = () =>
    rmSync(join(options.servicePath ?? projectRoot, workFolder), { recursive: true, force: true });
  const stop = async () => {
    await child.stopGroup();
    removeBundles();
  };
  const crash = async () => {
    await child.crashGroup();
    removeBundles();
  };
  return { apiUrl, httpPort, lambdaEndpoint: `http://127.0.0.1:${lambdaPort}`, stop, crash };
}
