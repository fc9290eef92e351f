/**
 * What `serverless package` produces: one small ESM bundle per function, and a CloudFormation template
 * that keeps the bucket and tables safe and every IAM grant scoped to its resources. Needs no emulator.
 *
 * The package runs in a scratch copy of the project (node_modules linked, not copied): serverless-esbuild
 * deletes `.esbuild/` and osls replaces `.serverless/` in the service directory even with `--package`,
 * and `.esbuild/` is where the serverless-offline of this very test run (or of `npm start`) loads the
 * handlers from.
 */
import { execFile } from 'node:child_process';
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, relative, sep } from 'node:path';
import { promisify } from 'node:util';
import { inflateRawSync } from 'node:zlib';
import { functionName, ROUTES } from '../../lib/http/routes.ts';
import { projectRoot } from '../../scripts/local-stack.ts';

/**
 * A bundle that grows past this pulls in something it should not (a second copy of the SDK, the
 * CLI): a route is its handler, middy, jose, zod-mini, the domain and the tree-shaken AWS SDK
 * clients it uses (bundled: serverless.yml, custom.esbuild), 160-250 KB zipped.
 */
const MAX_ZIP_BYTES = 320 * 1024;
/**
 * Packages the SDK loads only when asked for SigV4a (multi-region access points), in a try: not
 * installed, so left out of the bundles, and never reached by this service.
 */
const OPTIONAL_SDK_PACKAGES = new Set(['@aws-sdk/signature-v4-crt', '@aws-sdk/signature-v4a']);
/** The console function carries the web console's page (97 KB gzipped; tests/unit/console-page.test.ts). */
const MAX_ZIP_BYTES_OF: Record<string, number> = { console: 128 * 1024 };
/** The functions that check passwords and sign tokens: the seed's sign-in and the console's. */
const SIGN_IN = ['authSignin', 'sessionCreate'];
/** They check a token, then sign the same sign-in's next one: the public keys and the private ones. */
const RENEWALS = ['authRenew', 'sessionRenew'];
const CONSOLE_ORIGINS = ['https://console.example.com', 'https://admin.example.com:8443'];
/** Functions that touch no resource: they run with the shared role that may only write logs. */
const UNPRIVILEGED = ['health', 'openapi', 'unmatchedRoute', 'console'];
/** They end one sign-in: an UpdateItem of the user's ended sign-ins (and token version), nothing else. */
const SIGN_OUTS = ['authSignout', 'sessionDelete'];
const RUNTIME = 'nodejs24.x';
/** Not copied into the scratch service: dependencies (linked instead), VCS and build output. */
const NOT_COPIED = new Set(['node_modules', '.git', '.serverless', '.esbuild', '.local', 'coverage']);

type Json = any;
interface Resource {
  Type: string;
  Properties?: Json;
}

let workDir: string;
let outDir: string;
let template: { Resources: Record<string, Resource> };
let functions: Record<
  string,
  { name: string; handler: string; runtime?: string; package?: { artifact?: string } }
>;

const resourcesOfType = (type: string) =>
  Object.entries(template.Resources).filter(([, resource]) => resource.Type === type);

beforeAll(async () => {
  workDir = mkdtempSync(join(tmpdir(), 'file-jobs-package-'));
  const serviceDir = join(workDir, 'service');
  outDir = join(workDir, 'out');
  cpSync(projectRoot, serviceDir, {
    recursive: true,
    filter: (source) => !NOT_COPIED.has(relative(projectRoot, source).split(sep)[0]!),
  });
  symlinkSync(join(projectRoot, 'node_modules'), join(serviceDir, 'node_modules'), 'dir');
  mkdirSync(outDir);

  // No endpoint, profile or credential of the test stack may leak into the package run.
  const env: NodeJS.ProcessEnv = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('AWS_')),
  );
  Object.assign(env, {
    AWS_ACCESS_KEY_ID: 'ci',
    AWS_SECRET_ACCESS_KEY: 'ci',
    AWS_REGION: 'us-east-1',
    SLS_TELEMETRY_DISABLED: '1',
    // A deployed stage's browser origins come from configuration (the trailing slash is dropped).
    CORS_ALLOWED_ORIGINS: `${CONSOLE_ORIGINS[0]}, ${CONSOLE_ORIGINS[1]}/`,
  });
  await promisify(execFile)(
    join(serviceDir, 'node_modules', '.bin', 'serverless'),
    ['package', '--stage', 'pkgtest', '--package', outDir],
    { cwd: serviceDir, env, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 },
  );
  template = JSON.parse(readFileSync(join(outDir, 'cloudformation-template-update-stack.json'), 'utf8'));
  functions = JSON.parse(readFileSync(join(outDir, 'serverless-state.json'), 'utf8')).service.functions;
}, 150_000);

afterAll(() => {
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

/** The files in a zip, read from its central directory (no `unzip` needed). */
function zipDirectory(zip: Buffer): { name: string; read: () => Buffer }[] {
  const EOCD = 0x06054b50;
  const CENTRAL = 0x02014b50;
  let end = zip.length - 22;
  while (end >= 0 && zip.readUInt32LE(end) !== EOCD) end -= 1;
  if (end < 0) throw new Error('not a zip: no end of central directory record');
  const count = zip.readUInt16LE(end + 10);
  let offset = zip.readUInt32LE(end + 16);
  const files: { name: string; read: () => Buffer }[] = [];
  for (let i = 0; i < count; i += 1) {
    if (zip.readUInt32LE(offset) !== CENTRAL) throw new Error(`bad central directory entry ${i}`);
    const method = zip.readUInt16LE(offset + 10);
    const compressedSize = zip.readUInt32LE(offset + 20);
    const nameLength = zip.readUInt16LE(offset + 28);
    const extraLength = zip.readUInt16LE(offset + 30);
    const commentLength = zip.readUInt16LE(offset + 32);
    const local = zip.readUInt32LE(offset + 42);
    const read = () => {
      const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
      const data = zip.subarray(start, start + compressedSize);
      return method === 8 ? inflateRawSync(data) : data;
    };
    files.push({ name: zip.toString('utf8', offset + 46, offset + 46 + nameLength), read });
    offset += 46 + nameLength + extraLength + commentLength;
  }
  return files;
}

const asArray = <T>(value: T | T[] | undefined): T[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

/** Every policy document attached through IAM in a template: inline role policies and policy resources. */
function policyDocuments(resources: Record<string, Resource>): { where: string; document: Json }[] {
  const documents: { where: string; document: Json }[] = [];
  for (const [id, resource] of Object.entries(resources)) {
    switch (resource.Type) {
      case 'AWS::IAM::Role':
      case 'AWS::IAM::User':
      case 'AWS::IAM::Group':
        for (const [i, policy] of asArray<Json>(resource.Properties?.Policies).entries()) {
          documents.push({ where: `${id}.Policies[${i}]`, document: policy.PolicyDocument });
        }
        break;
      case 'AWS::IAM::Policy':
      case 'AWS::IAM::ManagedPolicy':
      case 'AWS::IAM::RolePolicy':
      case 'AWS::IAM::UserPolicy':
      case 'AWS::IAM::GroupPolicy':
        documents.push({ where: id, document: resource.Properties?.PolicyDocument });
        break;
    }
  }
  return documents;
}

const DATA_ACTION = /^(s3|dynamodb):/i;
const isWildcardResource = (resource: Json) => resource === '*';

/**
 * Allow statements that grant an S3 or DynamoDB action (or `*`) on every resource. A `NotAction` or
 * `NotResource` Allow is treated as covering everything, since it grants all that it doesn't name.
 */
function wildcardDataGrants(resources: Record<string, Resource>): string[] {
  const found: string[] = [];
  for (const { where, document } of policyDocuments(resources)) {
    for (const [i, statement] of asArray<Json>(document?.Statement).entries()) {
      if (statement.Effect !== 'Allow') continue;
      const actions = asArray<Json>(statement.Action);
      const dataAction =
        statement.NotAction !== undefined ||
        actions.some(
          (action) => typeof action === 'string' && (action.startsWith('*') || DATA_ACTION.test(action)),
        );
      const everyResource =
        statement.NotResource !== undefined || asArray<Json>(statement.Resource).some(isWildcardResource);
      if (dataAction && everyResource) found.push(`${where}.Statement[${i}]: ${JSON.stringify(statement)}`);
    }
  }
  return found;
}

/**
 * The Allow statements of the role a function runs with, flattened to [action, resource] pairs where
 * the resource is written as the CloudFormation it resolves from (`UsersTable`, `FilesBucket/uploads/*`…).
 */
function grantsOf(functionName: string): { action: string; resource: string }[] {
  const [, lambda] = resourcesOfType('AWS::Lambda::Function').find(([, fn]) =>
    fn.Properties.FunctionName.endsWith(`-${functionName}`),
  )!;
  const roleId: string = lambda.Properties.Role['Fn::GetAtt'][0];
  const describeResource = (resource: Json): string => {
    if (typeof resource === 'string') return resource;
    if (resource['Fn::GetAtt']) return resource['Fn::GetAtt'][0];
    if (resource['Fn::Join']) return resource['Fn::Join'][1].map(describeResource).join('');
    if (resource['Fn::Sub']) return resource['Fn::Sub'];
    if (resource.Ref) return `{${resource.Ref}}`;
    return JSON.stringify(resource);
  };
  const grants: { action: string; resource: string }[] = [];
  for (const policy of asArray<Json>(template.Resources[roleId]!.Properties?.Policies)) {
    for (const statement of asArray<Json>(policy.PolicyDocument.Statement)) {
      if (statement.Effect !== 'Allow') continue;
      for (const action of asArray<string>(statement.Action)) {
        for (const resource of asArray<Json>(statement.Resource))
          grants.push({ action, resource: describeResource(resource) });
      }
    }
  }
  return grants;
}

const actionsOn = (functionName: string, resource: RegExp) =>
  grantsOf(functionName)
    .filter((grant) => resource.test(grant.resource))
    .map((grant) => grant.action)
    .sort();

describe('least privilege per function', () => {
  it(`gives every function its own role, but those that touch nothing (${UNPRIVILEGED.join(', ')})`, () => {
    const roles = new Set<string>();
    for (const [, lambda] of resourcesOfType('AWS::Lambda::Function')) {
      const name: string = lambda.Properties.FunctionName;
      const role: string = lambda.Properties.Role['Fn::GetAtt'][0];
      if (UNPRIVILEGED.some((fn) => name.endsWith(`-${fn}`))) expect(role).toBe('IamRoleLambdaExecution');
      else {
        expect(role).not.toBe('IamRoleLambdaExecution');
        roles.add(role);
      }
    }
    expect(roles.size).toBe(Object.keys(functions).length - UNPRIVILEGED.length);
  });

  it(`lets the shared default role (${UNPRIVILEGED.join(', ')}) do nothing but write its logs`, () => {
    const actions = asArray<Json>(template.Resources.IamRoleLambdaExecution!.Properties.Policies).flatMap(
      (policy) =>
        asArray<Json>(policy.PolicyDocument.Statement).flatMap((statement) =>
          asArray<string>(statement.Action),
        ),
    );
    expect(actions.every((action) => action.startsWith('logs:'))).toBe(true);
  });

  // Every function that checks tokens reads the caller's token state (revocation), and no more.
  it("lets only sign-in read users; those that check tokens only GetItem a user's token state", () => {
    const checksTokens = (name: string) =>
      name !== 'wellKnownJwks' && grantsOf(name).some((grant) => grant.resource.endsWith('/jwt-public-keys'));
    const checkers = Object.keys(functions).filter(checksTokens);
    expect(checkers.length).toBeGreaterThan(10);
    for (const name of Object.keys(functions)) {
      const onUsers = actionsOn(name, /^UsersTable/);
      if (SIGN_IN.includes(name)) expect(onUsers.length).toBeGreaterThan(0);
      else if (SIGN_OUTS.includes(name))
        expect({ name, onUsers: onUsers.sort() }).toEqual({
          name,
          onUsers: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
        });
      else if (checkers.includes(name))
        expect({ name, onUsers }).toEqual({ name, onUsers: ['dynamodb:GetItem'] });
      else expect({ name, onUsers }).toEqual({ name, onUsers: [] });
    }
    for (const name of checkers) {
      const [, lambda] = resourcesOfType('AWS::Lambda::Function').find(([, fn]) =>
        fn.Properties.FunctionName.endsWith(`-${name}`),
      )!;
      const role = template.Resources[lambda.Properties.Role['Fn::GetAtt'][0]]!;
      const onUsers = asArray<Json>(role.Properties?.Policies)
        .flatMap((policy) => asArray<Json>(policy.PolicyDocument.Statement))
        .filter((statement) => JSON.stringify(statement.Resource).includes('UsersTable'));
      const readState = {
        'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['USER#*'] },
        'ForAllValues:StringEquals': { 'dynamodb:Attributes': ['pk', 'tokenVersion', 'endedSignIns'] },
        StringEqualsIfExists: { 'dynamodb:Select': 'SPECIFIC_ATTRIBUTES' },
      };
      const endSignIn = {
        'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['USER#*'] },
        'ForAllValues:StringEquals': {
          'dynamodb:Attributes': ['pk', 'endedSignIns', 'tokenVersion', 'updatedAt'],
        },
        StringEqualsIfExists: { 'dynamodb:ReturnValues': ['NONE', 'UPDATED_NEW'] },
      };
      expect({ name, conditions: onUsers.map((statement) => statement.Condition) }).toEqual({
        name,
        conditions: SIGN_OUTS.includes(name) ? [readState, endSignIn] : [readState],
      });
    }
  });

  it('lets only sign-in and renewal read the private signing keys; every protected route reads the public ones', () => {
    for (const name of Object.keys(functions)) {
      const params = grantsOf(name)
        .filter((grant) => grant.action === 'ssm:GetParameter')
        .map((grant) => grant.resource.replace(/.*:parameter/, ''))
        .sort();
      if (SIGN_IN.includes(name)) expect(params).toEqual(['/file-jobs/pkgtest/jwt-keys']);
      else if (RENEWALS.includes(name))
        expect({ name, params }).toEqual({
          name,
          params: ['/file-jobs/pkgtest/jwt-keys', '/file-jobs/pkgtest/jwt-public-keys'],
        });
      else if ([...UNPRIVILEGED, 'exportWorker', 'exportWorkerFailed', 'janitor'].includes(name))
        expect({ name, params }).toEqual({ name, params: [] });
      else expect({ name, params }).toEqual({ name, params: ['/file-jobs/pkgtest/jwt-public-keys'] });
    }
  });

  it('keeps the part signer from deleting or aborting anything, and from exports', () => {
    expect(grantsOf('uploadParts').map((grant) => grant.action)).toEqual(
      expect.not.arrayContaining([
        's3:DeleteObject',
        's3:AbortMultipartUpload',
        'dynamodb:DeleteItem',
        'dynamodb:PutItem',
      ]),
    );
    expect(actionsOn('uploadParts', /exports/)).toEqual([]);
    expect(actionsOn('uploadParts', /\/uploads\/\*$/)).toEqual(['s3:PutObject']);
  });

  it('lets the export worker read uploads but write only under exports/, and never the users or keys', () => {
    expect(actionsOn('exportWorker', /\/uploads\/\*$/)).toEqual(['s3:GetObject']);
    expect(actionsOn('exportWorker', /\/exports\/\*$/)).toEqual(
      expect.arrayContaining(['s3:PutObject', 's3:DeleteObject', 's3:AbortMultipartUpload']),
    );
    expect(
      grantsOf('exportWorker').filter((grant) => /ssm:|UsersTable/.test(`${grant.action} ${grant.resource}`)),
    ).toEqual([]);
    expect(actionsOn('exportWorker', /:function:.*-exportWorker$/)).toEqual(['lambda:InvokeFunction']);
  });

  it("lets those that only clean exports up (kill, cancel, the worker's failure handler, the janitor) never read or write an export's bytes", () => {
    for (const name of ['exportKill', 'exportCancel', 'exportWorkerFailed', 'janitor']) {
      expect({ name, onExports: actionsOn(name, /\/exports\/\*$/) }).toEqual({
        name,
        onExports: ['s3:AbortMultipartUpload', 's3:DeleteObject', 's3:ListMultipartUploadParts'],
      });
    }
  });

  it('gives read-only routes no write', () => {
    for (const name of ['jobsList', 'filesList', 'wellKnownJwks']) {
      const writes = grantsOf(name).filter((grant) =>
        /^(s3|dynamodb|lambda):(Put|Update|Delete|Abort|Invoke)/.test(grant.action),
      );
      expect({ name, writes }).toEqual({ name, writes: [] });
    }
  });

  it('lets only the janitor scan, and only the index of unfinished jobs', () => {
    for (const name of Object.keys(functions)) {
      const scans = grantsOf(name).filter((grant) => grant.action === 'dynamodb:Scan');
      if (name === 'janitor')
        expect(scans.map((grant) => grant.resource)).toEqual(['JobsTable/index/ActiveJobsByOwner']);
      else expect(scans).toEqual([]);
    }
  });

  it('lets only the export starters (API, worker, its failure handler, janitor) invoke the worker', () => {
    const invokersOf = (target: string) =>
      Object.keys(functions)
        .filter((name) =>
          grantsOf(name).some(
            (grant) =>
              grant.action === 'lambda:InvokeFunction' &&
              grant.resource.endsWith(`:function:file-jobs-pkgtest-${target}`),
          ),
        )
        .sort();
    expect(invokersOf('exportWorker')).toEqual([
      'exportCreate',
      'exportWorker',
      'exportWorkerFailed',
      'janitor',
    ]);
    // Lambda delivers a failed worker invocation to its destination with the worker's own role.
    expect(invokersOf('exportWorkerFailed')).toEqual(['exportWorker']);
    const invokers = Object.keys(functions).filter((name) =>
      grantsOf(name).some((grant) => grant.action === 'lambda:InvokeFunction'),
    );
    expect(invokers.sort()).toEqual(['exportCreate', 'exportWorker', 'exportWorkerFailed', 'janitor']);
  });

  it("sends the worker's failed invocations to exportWorkerFailed, unretried", () => {
    const configs = resourcesOfType('AWS::Lambda::EventInvokeConfig').map(
      ([, resource]) => resource.Properties,
    );
    expect(configs).toEqual([
      {
        FunctionName: { Ref: 'ExportWorkerLambdaFunction' },
        Qualifier: '$LATEST',
        MaximumRetryAttempts: 0,
        DestinationConfig: {
          OnFailure: { Destination: { 'Fn::GetAtt': ['ExportWorkerFailedLambdaFunction', 'Arn'] } },
        },
      },
    ]);
  });
});

describe('serverless package', () => {
  it('builds one zip per function, each a single small .mjs bundle of its own handler', () => {
    const names = Object.keys(functions);
    expect(names.length).toBeGreaterThan(0);
    const zips = readdirSync(outDir).filter((file) => file.endsWith('.zip'));
    const expected = names.map((name) => basename(functions[name]!.package?.artifact ?? `${name}.zip`));
    expect(zips.sort()).toEqual([...expected].sort());

    const problems: string[] = [];
    for (const name of names) {
      const fn = functions[name]!;
      const zipPath = join(outDir, basename(fn.package?.artifact ?? `${name}.zip`));
      const size = statSync(zipPath).size;
      const limit = MAX_ZIP_BYTES_OF[name] ?? MAX_ZIP_BYTES;
      if (size >= limit) problems.push(`${name}: ${size} bytes (limit ${limit})`);
      const entries = zipDirectory(readFileSync(zipPath)).filter((entry) => !entry.name.endsWith('/'));
      const files = entries.map((entry) => entry.name);
      // `functions/health.handler` -> `functions/health.mjs`
      const bundle = `${fn.handler.slice(0, fn.handler.lastIndexOf('.'))}.mjs`;
      if (files.length !== 1 || files[0] !== bundle) {
        problems.push(`${name}: expected only ${bundle}, found ${JSON.stringify(files)}`);
      }
      // Self-contained: the SDK it was tested with is inside, nothing is left for the runtime's.
      const code = entries[0]?.read().toString('utf8') ?? '';
      const external = [
        ...code.matchAll(/(?:from|import|require)\s*\(?\s*["']((?:@aws-sdk|@smithy)\/[^"']+)["']/g),
      ].filter((match) => !OPTIONAL_SDK_PACKAGES.has(match[1]!));
      if (external.length > 0)
        problems.push(
          `${name}: imports ${[...new Set(external.map((match) => match[1]))].join(', ')} at run time`,
        );
    }
    expect(problems).toEqual([]);
  });

  it(`runs every function on ${RUNTIME}`, () => {
    const lambdas = resourcesOfType('AWS::Lambda::Function').map(([, resource]) => resource.Properties);
    for (const fn of Object.values(functions)) {
      expect({ function: fn.name, runtime: fn.runtime }).toEqual({ function: fn.name, runtime: RUNTIME });
      const lambda = lambdas.find((properties) => properties.FunctionName === fn.name);
      expect({ function: fn.name, runtime: lambda?.Runtime }).toEqual({
        function: fn.name,
        runtime: RUNTIME,
      });
    }
  });

  it('gives the export worker two vCPUs (3,538 MB) and a gzip slice per vCPU', () => {
    const [, worker] = resourcesOfType('AWS::Lambda::Function').find(([, fn]) =>
      fn.Properties.FunctionName.endsWith('-exportWorker'),
    )!;
    expect(worker.Properties.MemorySize).toBe(2 * 1769);
    expect(worker.Properties.Environment.Variables.EXPORT_GZIP_THREADS).toBe('2');
  });

  it('gives the files bucket a multipart backstop, browser CORS, no public access and encryption', () => {
    const buckets = resourcesOfType('AWS::S3::Bucket').filter(([id]) => id !== 'ServerlessDeploymentBucket');
    expect(buckets.length).toBeGreaterThan(0);
    for (const [, { Properties: bucket }] of buckets) {
      const rules: Json[] = bucket.LifecycleConfiguration?.Rules ?? [];
      // The backstop counts from initiation, not activity: it must outlast multi-day jobs.
      const backstops = rules.filter(
        (rule) => rule.Status === 'Enabled' && rule.AbortIncompleteMultipartUpload?.DaysAfterInitiation,
      );
      expect(
        backstops.map((rule) => [
          rule.Prefix,
          Number(rule.AbortIncompleteMultipartUpload.DaysAfterInitiation) >= 14,
        ]),
      ).toEqual([['', true]]);
      // An export's output goes with its job: the same number of days as the job's retention.
      const retentionDays = Number(
        template.Resources.JanitorLambdaFunction!.Properties.Environment.Variables.JOB_RETENTION_DAYS,
      );
      expect(retentionDays).toBeGreaterThan(0);
      expect(
        rules
          .filter((rule) => rule.Status === 'Enabled' && rule.ExpirationInDays !== undefined)
          .map((rule) => [rule.Prefix, Number(rule.ExpirationInDays)]),
      ).toEqual([['exports/', retentionDays]]);
      const cors: Json[] = bucket.CorsConfiguration?.CorsRules ?? [];
      expect(
        cors.some((rule) => rule.ExposedHeaders?.includes('ETag') && rule.AllowedMethods?.includes('PUT')),
      ).toBe(true);
      expect(bucket.PublicAccessBlockConfiguration).toEqual({
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
      const encryption: Json[] = bucket.BucketEncryption?.ServerSideEncryptionConfiguration ?? [];
      expect(encryption.length).toBeGreaterThan(0);
      expect(encryption[0].ServerSideEncryptionByDefault?.SSEAlgorithm).toMatch(
        /^(AES256|aws:kms|aws:kms:dsse)$/,
      );
    }
  });

  it('takes the browser origins of a deployed stage from configuration, for the API and the bucket', () => {
    const [[, api]] = resourcesOfType('AWS::ApiGatewayV2::Api') as [[string, Resource]];
    expect(api.Properties.CorsConfiguration).toMatchObject({
      AllowOrigins: CONSOLE_ORIGINS,
      AllowMethods: expect.arrayContaining(['GET', 'POST', 'DELETE', 'OPTIONS']),
      AllowHeaders: expect.arrayContaining(['Authorization', 'auth_token', 'Content-Type']),
      ExposeHeaders: expect.arrayContaining(['Retry-After', 'X-Request-Id']),
    });
    // Browsers PUT parts to the bucket from the console: the configured origins and the API's own
    // (the console it serves), never any origin.
    const rules: Json[] = template.Resources.FilesBucket!.Properties.CorsConfiguration.CorsRules;
    expect(rules.map((rule) => rule.AllowedOrigins)).toEqual([
      [...CONSOLE_ORIGINS, { 'Fn::GetAtt': ['HttpApi', 'ApiEndpoint'] }],
    ]);
    expect([...api.Properties.CorsConfiguration.AllowOrigins, ...rules[0].AllowedOrigins]).not.toContain('*');
  });

  it('routes each route of the route table to the function named after its handler, and no other', () => {
    const routes = resourcesOfType('AWS::ApiGatewayV2::Route').map(([, route]) => {
      const integration = template.Resources[route.Properties.Target['Fn::Join'][1][1].Ref]!;
      const lambda = template.Resources[integration.Properties.IntegrationUri['Fn::GetAtt'][0]]!;
      return `${route.Properties.RouteKey} -> ${lambda.Properties.FunctionName.replace('file-jobs-pkgtest-', '')}`;
    });
    expect(routes.sort()).toEqual(
      [
        ...Object.values(ROUTES).map((route) => `${route.route} -> ${functionName(route)}`),
        '$default -> unmatchedRoute',
      ].sort(),
    );
  });

  // Every HTTP handler's stack answers 404/405 from the route keys (lib/http/route-keys.ts); the route
  // table they come from carries every route's schemas and summaries (scripts/esbuild-plugins.cjs).
  it('bundles the route keys into the $default function as values, without the route table', () => {
    const zip = readFileSync(join(outDir, basename(functions.unmatchedRoute!.package?.artifact ?? '')));
    const bundle = zipDirectory(zip)[0]!.read().toString('utf8');
    const keys = Object.values(ROUTES).map((route) => route.route);
    const summaries = Object.values(ROUTES).map((route) => route.summary);
    expect(keys.filter((key) => !bundle.includes(JSON.stringify(key)))).toEqual([]);
    expect(summaries.filter((summary) => bundle.includes(summary))).toEqual([]);
  });

  it('routes whatever no route takes to the $default route (404/405 in the error shape)', () => {
    const routes = resourcesOfType('AWS::ApiGatewayV2::Route').map(([, route]) => route.Properties.RouteKey);
    expect(routes).toContain('$default');
    expect(routes).toContain('GET /files');
  });

  it('gives every table TTL on expiresAt, on-demand billing and point-in-time recovery', () => {
    const tables = resourcesOfType('AWS::DynamoDB::Table');
    expect(tables.length).toBeGreaterThan(0);
    for (const [id, { Properties: table }] of tables) {
      expect({ id, ttl: table.TimeToLiveSpecification }).toEqual({
        id,
        ttl: { AttributeName: 'expiresAt', Enabled: true },
      });
      expect({ id, billing: table.BillingMode }).toEqual({ id, billing: 'PAY_PER_REQUEST' });
      expect({ id, pitr: table.PointInTimeRecoverySpecification?.PointInTimeRecoveryEnabled }).toEqual({
        id,
        pitr: true,
      });
    }
  });

  it('grants no S3 or DynamoDB action on Resource "*" in any IAM policy', () => {
    const statements = policyDocuments(template.Resources).flatMap(({ document }) =>
      asArray(document?.Statement),
    );
    expect(statements.length).toBeGreaterThan(0);
    expect(wildcardDataGrants(template.Resources)).toEqual([]);
  });

  it('the IAM walker catches wildcard grants wherever they are attached', () => {
    const statement = (Action: Json, Resource: Json) => ({ Effect: 'Allow', Action, Resource });
    const role = (...Statement: Json[]): Resource => ({
      Type: 'AWS::IAM::Role',
      Properties: { Policies: [{ PolicyName: 'p', PolicyDocument: { Statement } }] },
    });
    expect(wildcardDataGrants({ R: role(statement('logs:PutLogEvents', '*')) })).toEqual([]);
    expect(wildcardDataGrants({ R: role({ ...statement('s3:*', '*'), Effect: 'Deny' }) })).toEqual([]);
    expect(wildcardDataGrants({ R: role(statement(['s3:GetObject'], 'arn:aws:s3:::b/*')) })).toEqual([]);
    expect(
      wildcardDataGrants({ R: role(statement(['s3:GetObject'], ['arn:aws:s3:::b/*', '*'])) }),
    ).toHaveLength(1);
    expect(wildcardDataGrants({ R: role(statement('DynamoDB:Query', '*')) })).toHaveLength(1);
    expect(wildcardDataGrants({ R: role(statement('*', ['*'])) })).toHaveLength(1);
    expect(
      wildcardDataGrants({ R: role({ Effect: 'Allow', NotAction: 'iam:*', Resource: '*' }) }),
    ).toHaveLength(1);
    // A single statement object (not an array) in a per-function role or a standalone policy.
    expect(
      wildcardDataGrants({
        P: {
          Type: 'AWS::IAM::ManagedPolicy',
          Properties: { PolicyDocument: { Statement: statement('dynamodb:PutItem', '*') } },
        },
        Q: {
          Type: 'AWS::IAM::Policy',
          Properties: { PolicyDocument: { Statement: [statement('s3:*', '*')] } },
        },
      }),
    ).toHaveLength(2);
  });
});
