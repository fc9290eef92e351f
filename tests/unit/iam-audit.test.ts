/**
 * The test run's IAM check (tests/support/iam-audit.ts): what IAM sees of a call, and how a policy
 * decides on it. Each case is a rule from AWS's documentation (IAM's condition operators and set
 * qualifiers, the Service Authorization Reference for S3 and DynamoDB); the check against the
 * project's real roles is tests/integration/iam-roles.test.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditedCall } from '../../lib/aws/call-audit.ts';
import type { ResolvedService } from '../../scripts/local-stack.ts';
import {
  ACCOUNT,
  checkAuditedCalls,
  conditionHolds,
  EVERY_ATTRIBUTE,
  expressionAttributes,
  type IamRequest,
  iamRequestsOf,
  isAllowed,
  keySchemas,
  resolveIntrinsic,
  roleStatements,
  type Statement,
} from '../support/iam-audit.ts';

const REGION = 'eu-west-1';
const TABLE_ARN = `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/svc-dev-jobs`;

const service = {
  service: 'svc',
  provider: { region: REGION, stage: 'dev', environment: {} },
  resources: {
    Resources: {
      Files: { Type: 'AWS::S3::Bucket', Properties: { BucketName: 'svc-dev-files' } },
      Jobs: {
        Type: 'AWS::DynamoDB::Table',
        Properties: {
          TableName: 'svc-dev-jobs',
          KeySchema: [
            { AttributeName: 'pk', KeyType: 'HASH' },
            { AttributeName: 'sk', KeyType: 'RANGE' },
          ],
          GlobalSecondaryIndexes: [
            { IndexName: 'ByOwner', KeySchema: [{ AttributeName: 'owner', KeyType: 'HASH' }] },
          ],
        },
      },
    },
  },
  functions: {
    reader: {
      iamRoleStatements: [
        {
          Effect: 'Allow',
          Action: ['s3:GetObject'],
          Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': ['Files', 'Arn'] }, '/uploads/*']] },
        },
        {
          Effect: 'Allow',
          Action: ['dynamodb:GetItem'],
          Resource: { 'Fn::GetAtt': ['Jobs', 'Arn'] },
          Condition: {
            'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['USER#*'] },
            'ForAllValues:StringEquals': { 'dynamodb:Attributes': ['pk', 'sk', 'version'] },
            StringEqualsIfExists: { 'dynamodb:Select': 'SPECIFIC_ATTRIBUTES' },
          },
        },
      ],
    },
    nothing: {},
  },
} as unknown as ResolvedService;

const allow = (Action: string[], Resource: string[], Condition?: Statement['Condition']): Statement => ({
  Effect: 'Allow',
  Action,
  Resource,
  ...(Condition ? { Condition } : {}),
});
const request = (action: string, resource: string, context: IamRequest['context'] = {}): IamRequest => ({
  action,
  resource,
  context,
});
const call = (service: string, operation: string, input: unknown, fn = 'svc-dev-reader'): AuditedCall => ({
  function: fn,
  service,
  operation,
  input,
});
const keys = keySchemas(service);
const requestsOf = (service: string, operation: string, input: unknown) =>
  iamRequestsOf(call(service, operation, input), keys, REGION);

describe('policy evaluation', () => {
  it('matches actions without regard to case and with wildcards, resources with * and ?', () => {
    const statements = [allow(['S3:Get*'], ['arn:aws:s3:::b/uploads/*', 'arn:aws:s3:::b/x?'])];
    expect(isAllowed(statements, request('s3:GetObject', 'arn:aws:s3:::b/uploads/u/f'))).toBe(true);
    expect(isAllowed(statements, request('s3:GetObject', 'arn:aws:s3:::b/x1'))).toBe(true);
    expect(isAllowed(statements, request('s3:GetObject', 'arn:aws:s3:::b/x12'))).toBe(false);
    expect(isAllowed(statements, request('s3:GetObject', 'arn:aws:s3:::b/exports/f'))).toBe(false);
    expect(isAllowed(statements, request('s3:PutObject', 'arn:aws:s3:::b/uploads/f'))).toBe(false);
    // Regular-expression characters in an ARN are literal.
    expect(
      isAllowed(
        [allow(['s3:GetObject'], ['arn:aws:s3:::a.b/*'])],
        request('s3:GetObject', 'arn:aws:s3:::aXb/k'),
      ),
    ).toBe(false);
  });

  it('lets an explicit Deny win over any Allow', () => {
    const statements: Statement[] = [
      allow(['s3:*'], ['*']),
      { Effect: 'Deny', Action: ['s3:DeleteObject'], Resource: ['arn:aws:s3:::b/*'] },
    ];
    expect(isAllowed(statements, request('s3:DeleteObject', 'arn:aws:s3:::b/k'))).toBe(false);
    expect(isAllowed(statements, request('s3:GetObject', 'arn:aws:s3:::b/k'))).toBe(true);
    expect(isAllowed([], request('s3:GetObject', 'arn:aws:s3:::b/k'))).toBe(false);
  });

  it('evaluates a single-valued operator as false on an absent key, unless IfExists', () => {
    expect(conditionHolds('StringLike', 's3:prefix', ['uploads/*'], {})).toBe(false);
    expect(conditionHolds('StringLikeIfExists', 's3:prefix', ['uploads/*'], {})).toBe(true);
    expect(conditionHolds('StringLike', 'S3:Prefix', ['uploads/*'], { 's3:prefix': 'uploads/u/' })).toBe(
      true,
    );
    expect(conditionHolds('StringLike', 's3:prefix', ['uploads/*'], { 's3:prefix': 'exports/' })).toBe(false);
    expect(
      conditionHolds('StringEqualsIfExists', 'dynamodb:Select', ['SPECIFIC_ATTRIBUTES'], {
        'dynamodb:select': 'ALL_ATTRIBUTES',
      }),
    ).toBe(false);
  });

  it('evaluates ForAllValues as true on an empty set and ForAnyValue as false (IAM’s set rules)', () => {
    expect(conditionHolds('ForAllValues:StringEquals', 'dynamodb:Attributes', ['a'], {})).toBe(true);
    expect(conditionHolds('ForAnyValue:StringEquals', 'dynamodb:Attributes', ['a'], {})).toBe(false);
    const context = { 'dynamodb:attributes': ['a', 'b'] };
    expect(conditionHolds('ForAllValues:StringEquals', 'dynamodb:Attributes', ['a', 'b', 'c'], context)).toBe(
      true,
    );
    expect(conditionHolds('ForAllValues:StringEquals', 'dynamodb:Attributes', ['a'], context)).toBe(false);
    expect(conditionHolds('ForAnyValue:StringEquals', 'dynamodb:Attributes', ['b'], context)).toBe(true);
  });

  it('refuses to guess: an operator it was not taught, or a single-valued operator on a set, throws', () => {
    expect(() => conditionHolds('NumericLessThan', 'aws:MultiFactorAuthAge', ['3600'], {})).toThrow(
      /NumericLessThan/,
    );
    expect(() =>
      conditionHolds('StringEquals', 'dynamodb:Attributes', ['a'], { 'dynamodb:attributes': ['a'] }),
    ).toThrow(/several values/);
  });
});

describe("CloudFormation's intrinsics in statements", () => {
  it('resolves GetAtt Arn of buckets and tables, Join, Sub and the pseudo parameters', () => {
    expect(resolveIntrinsic({ 'Fn::GetAtt': ['Files', 'Arn'] }, service, REGION)).toBe(
      'arn:aws:s3:::svc-dev-files',
    );
    expect(resolveIntrinsic({ 'Fn::GetAtt': ['Jobs', 'Arn'] }, service, REGION)).toBe(TABLE_ARN);
    expect(
      resolveIntrinsic(
        {
          'Fn::Join': [
            '',
            [
              'arn:',
              { Ref: 'AWS::Partition' },
              ':ssm:',
              { Ref: 'AWS::Region' },
              ':',
              { Ref: 'AWS::AccountId' },
              ':parameter/p',
            ],
          ],
        },
        service,
        REGION,
      ),
    ).toBe(`arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/p`);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: CloudFormation's Fn::Sub syntax, not a template literal.
    expect(resolveIntrinsic({ 'Fn::Sub': '${Jobs.Arn}/index/*' }, service, REGION)).toBe(
      `${TABLE_ARN}/index/*`,
    );
    expect(() => resolveIntrinsic({ 'Fn::GetAtt': ['Nope', 'Arn'] }, service, REGION)).toThrow(/Nope/);
    expect(() => resolveIntrinsic({ 'Fn::ImportValue': 'x' }, service, REGION)).toThrow(/cannot resolve/);
  });

  it("reads each function's statements, and none for a function without any", () => {
    const roles = roleStatements(service);
    expect(roles.get('reader')?.[0]?.Resource).toEqual(['arn:aws:s3:::svc-dev-files/uploads/*']);
    expect(roles.get('nothing')).toEqual([]);
  });
});

describe('what IAM sees of an S3 call', () => {
  const object = (key: string) => `arn:aws:s3:::b/${key}`;
  it('maps operations to the actions the Service Authorization Reference names', () => {
    const one = (operation: string) =>
      requestsOf('S3', operation, { Bucket: 'b', Key: 'k' }).map((r) => r.action);
    expect(one('HeadObject')).toEqual(['s3:GetObject']);
    for (const write of ['PutObject', 'CreateMultipartUpload', 'UploadPart', 'CompleteMultipartUpload'])
      expect(one(write)).toEqual(['s3:PutObject']);
    expect(one('ListParts')).toEqual(['s3:ListMultipartUploadParts']);
    expect(one('AbortMultipartUpload')).toEqual(['s3:AbortMultipartUpload']);
    expect(requestsOf('S3', 'ListMultipartUploads', { Bucket: 'b' })).toEqual([
      request('s3:ListBucketMultipartUploads', 'arn:aws:s3:::b'),
    ]);
  });

  it('needs GetObject on the source of a copy as well as PutObject on its target', () => {
    expect(
      requestsOf('S3', 'UploadPartCopy', {
        Bucket: 'b',
        Key: 'exports/u/j/f',
        CopySource: 'b/uploads/u/a%20b.bin?versionId=1',
      }),
    ).toEqual([
      request('s3:PutObject', object('exports/u/j/f')),
      request('s3:GetObject', object('uploads/u/a b.bin')),
    ]);
  });

  it('lists with the prefix as s3:prefix, and deletes each key of a DeleteObjects', () => {
    expect(requestsOf('S3', 'ListObjectsV2', { Bucket: 'b', Prefix: 'uploads/u/' })).toEqual([
      request('s3:ListBucket', 'arn:aws:s3:::b', { 's3:prefix': 'uploads/u/' }),
    ]);
    expect(requestsOf('S3', 'ListObjectsV2', { Bucket: 'b' })[0]?.context).toEqual({});
    expect(
      requestsOf('S3', 'DeleteObjects', {
        Bucket: 'b',
        Delete: { Objects: [{ Key: 'x' }, { Key: 'y' }] },
      }).map((r) => r.resource),
    ).toEqual([object('x'), object('y')]);
  });

  it('throws for an operation it was not taught', () => {
    expect(() => requestsOf('S3', 'PutBucketPolicy', { Bucket: 'b' })).toThrow(/teach/);
    expect(() => requestsOf('SQS', 'SendMessage', {})).toThrow(/teach/);
  });
});

describe('what IAM sees of a DynamoDB call', () => {
  const userKey = { pk: { S: 'USER#ann' }, sk: { S: 'PROFILE' } };

  it('reads a projection as SPECIFIC_ATTRIBUTES with those attributes and the key', () => {
    const [get] = requestsOf('DynamoDB', 'GetItem', {
      TableName: 'svc-dev-jobs',
      Key: userKey,
      ProjectionExpression: 'pk, #v',
      ExpressionAttributeNames: { '#v': 'version' },
    });
    expect(get).toEqual(
      request('dynamodb:GetItem', TABLE_ARN, {
        'dynamodb:attributes': ['pk', 'sk', 'version'],
        'dynamodb:leadingkeys': ['USER#ann'],
        'dynamodb:select': 'SPECIFIC_ATTRIBUTES',
      }),
    );
  });

  it('reads every attribute without a projection, which no attribute list allows', () => {
    const [get] = requestsOf('DynamoDB', 'GetItem', { TableName: 'svc-dev-jobs', Key: userKey });
    expect(get?.context['dynamodb:select']).toBe('ALL_ATTRIBUTES');
    expect(get?.context['dynamodb:attributes']).toContain(EVERY_ATTRIBUTE);
    const roles = roleStatements(service);
    expect(isAllowed(roles.get('reader')!, get!)).toBe(false);
  });

  it('counts the attributes an update and its condition name, top level only, not functions or values', () => {
    expect([
      ...expressionAttributes('SET #s = :s, a.b = if_not_exists(c, :z) + :one REMOVE d[2] ADD e :one', {
        '#s': 'status',
      }),
    ]).toEqual(['status', 'a', 'c', 'd', 'e']);
    expect([
      ...expressionAttributes('attribute_exists(pk) AND size(#l) < :n AND NOT begins_with(sk, :p)', {
        '#l': 'list',
      }),
    ]).toEqual(['pk', 'list', 'sk']);
    expect(() => expressionAttributes('#missing = :v', {})).toThrow(/ExpressionAttributeNames/);
    const [update] = requestsOf('DynamoDB', 'UpdateItem', {
      TableName: 'svc-dev-jobs',
      Key: userKey,
      UpdateExpression: 'SET version = :v',
      ConditionExpression: 'attribute_exists(pk)',
    });
    expect(update?.context).toEqual({
      'dynamodb:attributes': ['pk', 'sk', 'version'],
      'dynamodb:leadingkeys': ['USER#ann'],
      'dynamodb:returnvalues': 'NONE',
    });
  });

  it('checks each item of a transaction as its own action (there is no TransactWriteItems action)', () => {
    const actions = requestsOf('DynamoDB', 'TransactWriteItems', {
      TransactItems: [
        { Put: { TableName: 'svc-dev-jobs', Item: { pk: { S: 'A' }, sk: { S: '1' }, n: { N: '1' } } } },
        {
          Update: {
            TableName: 'svc-dev-jobs',
            Key: { pk: { S: 'A' }, sk: { S: '2' } },
            UpdateExpression: 'SET n = :n',
          },
        },
        { Delete: { TableName: 'svc-dev-jobs', Key: { pk: { S: 'A' }, sk: { S: '3' } } } },
        {
          ConditionCheck: {
            TableName: 'svc-dev-jobs',
            Key: { pk: { S: 'A' }, sk: { S: '4' } },
            ConditionExpression: 'attribute_exists(pk)',
          },
        },
      ],
    }).map((r) => r.action);
    expect(actions).toEqual([
      'dynamodb:PutItem',
      'dynamodb:UpdateItem',
      'dynamodb:DeleteItem',
      'dynamodb:ConditionCheckItem',
    ]);
  });

  it("takes a query's leading key from its key condition, on the index's own partition key", () => {
    const [query] = requestsOf('DynamoDB', 'Query', {
      TableName: 'svc-dev-jobs',
      IndexName: 'ByOwner',
      KeyConditionExpression: '#o = :o AND begins_with(sk, :p)',
      ExpressionAttributeNames: { '#o': 'owner' },
      ExpressionAttributeValues: { ':o': { S: 'USER#ann' }, ':p': { S: 'JOB#' } },
    });
    expect(query?.resource).toBe(`${TABLE_ARN}/index/ByOwner`);
    expect(query?.context['dynamodb:leadingkeys']).toEqual(['USER#ann']);
    expect(() =>
      requestsOf('DynamoDB', 'Query', {
        TableName: 'svc-dev-jobs',
        KeyConditionExpression: 'sk = :s',
        ExpressionAttributeValues: {},
      }),
    ).toThrow(/partition key/);
  });

  it('gives a BatchGetItem every key’s partition as leading keys', () => {
    const [batch] = requestsOf('DynamoDB', 'BatchGetItem', {
      RequestItems: { 'svc-dev-jobs': { Keys: [userKey, { pk: { S: 'JOB#1' }, sk: { S: 'PART#1' } }] } },
    });
    expect(batch?.action).toBe('dynamodb:BatchGetItem');
    expect(batch?.context['dynamodb:leadingkeys']).toEqual(['USER#ann', 'JOB#1']);
  });
});

describe('the check of a recorded run', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'iam-audit-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reports what a function's role refuses and passes what it allows, another stage's stack's calls as its own", () => {
    const file = join(dir, 'calls.jsonl');
    const calls: AuditedCall[] = [
      call('S3', 'GetObject', { Bucket: 'svc-dev-files', Key: 'uploads/ann/a' }),
      { ...call('S3', 'GetObject', { Bucket: 'svc-dev-files', Key: 'exports/ann/j/a' }), presigned: true },
      call('DynamoDB', 'GetItem', {
        TableName: 'svc-dev-jobs',
        Key: { pk: { S: 'USER#ann' }, sk: { S: 'P' } },
        ProjectionExpression: 'version',
      }),
      call('S3', 'GetObject', { Bucket: 'svc-dev-files', Key: 'uploads/ann/a' }, 'svc-dev-nothing'),
      // The fault tests' stack: stage `faults`, its own bucket.
      call('S3', 'GetObject', { Bucket: 'svc-faults-files', Key: 'uploads/bob/b' }, 'svc-faults-reader'),
      call('S3', 'GetObject', { Bucket: 'svc-faults-files', Key: 'exports/bob/b' }, 'svc-faults-reader'),
      call('S3', 'GetObject', { Bucket: 'svc-dev-files', Key: 'uploads/ann/a' }, 'svc-dev-ghost'),
      call('S3', 'SelectObjectContent', { Bucket: 'svc-dev-files', Key: 'uploads/ann/a' }),
    ];
    writeFileSync(file, `${calls.map((c) => JSON.stringify(c)).join('\n')}\n`);
    const result = checkAuditedCalls(file, service);
    expect(result.skipped).toBe(1);
    expect(Object.fromEntries(result.checked)).toEqual({ reader: 6, nothing: 1 });
    expect(result.refused).toEqual([
      expect.stringMatching(
        /^reader: S3 GetObject \(presigned URL\): s3:GetObject on arn:aws:s3:::svc-dev-files\/exports\/ann\/j\/a /,
      ),
      expect.stringMatching(/^nothing: S3 GetObject: s3:GetObject on .*uploads\/ann\/a/),
      expect.stringMatching(
        /^reader: S3 GetObject: s3:GetObject on arn:aws:s3:::svc-dev-files\/exports\/bob\/b /,
      ),
      expect.stringMatching(/^reader: S3 SelectObjectContent: no IAM mapping/),
    ]);
    expect(result.unexercised).toEqual([]);
    // Every action of the reader's role was needed by one of its calls; `nothing` has none.
    expect(result.unusedGrants).toEqual([]);
    writeFileSync(file, '');
    expect(checkAuditedCalls(file, service).unexercised).toEqual(['reader']);
    // A run that only read objects leaves the reader's DynamoDB grant unused.
    writeFileSync(file, `${JSON.stringify(calls[0])}\n`);
    expect(checkAuditedCalls(file, service).unusedGrants).toEqual([
      `reader: dynamodb:GetItem on ${TABLE_ARN} (with conditions)`,
    ]);
  });
});
