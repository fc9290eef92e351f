/**
 * The IAM check of a test run: every AWS call a function made (lib/aws/call-audit.ts records them
 * while the suite runs) must be allowed by the role serverless.yml gives that function. No emulator
 * here checks IAM, so a missing action, a resource outside the granted prefix, or a DynamoDB call
 * that reads an attribute its fine-grained grant leaves out would otherwise show only after a
 * deploy, as AccessDenied.
 *
 * Two halves, each written from AWS's documentation and held to it by tests/unit/iam-audit.test.ts:
 *
 * - what IAM sees of a call: its actions (the Service Authorization Reference: HeadObject is
 *   s3:GetObject, UploadPart and CompleteMultipartUpload are s3:PutObject, UploadPartCopy needs
 *   s3:GetObject on the source too, a transaction's items are each their own action, …), the
 *   resource ARN of each, and the condition keys this service's policies use (s3:prefix,
 *   dynamodb:LeadingKeys, dynamodb:Attributes, dynamodb:Select, dynamodb:ReturnValues);
 * - the policy evaluation of the statements serverless.yml writes: Allow and Deny, actions and
 *   resources with `*` and `?`, the String condition operators with IfExists and the
 *   ForAllValues / ForAnyValue set qualifiers.
 *
 * It is strict where it cannot know: an operation, a condition operator or an intrinsic function it
 * was not taught is reported, never passed. Where AWS leaves room, it takes the reading that refuses
 * more: a read without a projection reads every attribute (dynamodb:Select ALL_ATTRIBUTES), and a
 * write touches every attribute its expressions name.
 */
import { readFileSync } from 'node:fs';
import type { AuditedCall } from '../../lib/aws/call-audit.ts';
import type { ResolvedService } from '../../scripts/local-stack.ts';

/** Stands for the account in both the policies and the requests: only their match matters. */
export const ACCOUNT = '123456789012';
const PARTITION = 'aws';

type Json = any;
export type Context = Record<string, string | string[]>;

export interface IamRequest {
  action: string;
  resource: string;
  /** Condition keys, by their lower-case names. */
  context: Context;
}

export interface Statement {
  Effect: 'Allow' | 'Deny';
  Action: string[];
  Resource: string[];
  Condition?: Record<string, Record<string, string | string[]>>;
}

const asArray = <T>(value: T | T[] | undefined): T[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

// ---- Policies: serverless.yml's statements with CloudFormation's intrinsics resolved ----

/** The ARN a `Fn::GetAtt [id, Arn]` of this template gives. */
function arnOf(service: ResolvedService, id: string, region: string): string {
  const resource = service.resources.Resources[id];
  switch (resource?.Type) {
    case 'AWS::S3::Bucket':
      return `arn:${PARTITION}:s3:::${resource.Properties.BucketName}`;
    case 'AWS::DynamoDB::Table':
      return `arn:${PARTITION}:dynamodb:${region}:${ACCOUNT}:table/${resource.Properties.TableName}`;
    default:
      throw new Error(
        `the IAM check cannot resolve the ARN of ${id} (${resource?.Type ?? 'no such resource'})`,
      );
  }
}

/** A statement's Resource value as the string CloudFormation would make of it. */
export function resolveIntrinsic(value: Json, service: ResolvedService, region: string): string {
  if (typeof value === 'string') return value;
  const pseudo: Record<string, string> = {
    'AWS::Partition': PARTITION,
    'AWS::Region': region,
    'AWS::AccountId': ACCOUNT,
  };
  if (value && typeof value === 'object') {
    if ('Ref' in value && pseudo[value.Ref]) return pseudo[value.Ref]!;
    if ('Fn::GetAtt' in value) {
      const [id, attribute] = asArray<string>(value['Fn::GetAtt']);
      if (attribute === 'Arn') return arnOf(service, id!, region);
    }
    if ('Fn::Join' in value) {
      const [separator, parts] = value['Fn::Join'];
      return (parts as Json[]).map((part) => resolveIntrinsic(part, service, region)).join(separator);
    }
    if ('Fn::Sub' in value && typeof value['Fn::Sub'] === 'string') {
      return (value['Fn::Sub'] as string).replace(/\$\{([^}]+)\}/g, (_, name: string) => {
        if (pseudo[name]) return pseudo[name]!;
        if (name.endsWith('.Arn')) return arnOf(service, name.slice(0, -'.Arn'.length), region);
        throw new Error(`the IAM check cannot resolve \${${name}} in Fn::Sub`);
      });
    }
  }
  throw new Error(`the IAM check cannot resolve ${JSON.stringify(value)}`);
}

/** Each function's role statements, by function key (serverless-iam-roles-per-function's input). */
export function roleStatements(service: ResolvedService): Map<string, Statement[]> {
  const region = service.provider.region;
  const functions = Object.assign({}, ...asArray<Json>(service.functions)) as Record<
    string,
    { iamRoleStatements?: Json[] }
  >;
  const roles = new Map<string, Statement[]>();
  for (const [key, fn] of Object.entries(functions)) {
    roles.set(
      key,
      asArray(fn.iamRoleStatements).map((statement: Json) => {
        if (statement.NotAction || statement.NotResource || statement.NotPrincipal)
          throw new Error(`${key}: the IAM check does not evaluate NotAction, NotResource or NotPrincipal`);
        return {
          Effect: statement.Effect,
          Action: asArray<string>(statement.Action),
          Resource: asArray<Json>(statement.Resource).map((resource) =>
            resolveIntrinsic(resource, service, region),
          ),
          ...(statement.Condition ? { Condition: statement.Condition } : {}),
        };
      }),
    );
  }
  return roles;
}

// ---- Evaluation ----

/** IAM's wildcards: `*` any run of characters, `?` any one. Each pattern is compiled once. */
const globs = new Map<string, RegExp>();
function globMatch(pattern: string, value: string, ignoreCase = false) {
  const flags = ignoreCase ? 'i' : '';
  let glob = globs.get(`${flags}:${pattern}`);
  if (!glob) {
    const body = pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.');
    glob = new RegExp(`^${body}$`, flags);
    globs.set(`${flags}:${pattern}`, glob);
  }
  return glob.test(value);
}

const STRING_OPERATORS: Record<string, (policy: string, value: string) => boolean> = {
  StringEquals: (policy, value) => policy === value,
  StringLike: (policy, value) => globMatch(policy, value),
  StringEqualsIgnoreCase: (policy, value) => policy.toLowerCase() === value.toLowerCase(),
};

/** One condition operator over one key, as IAM evaluates it. */
export function conditionHolds(operator: string, key: string, policyValues: string[], context: Context) {
  const match = /^(?:(ForAllValues|ForAnyValue):)?(\w+?)(IfExists)?$/.exec(operator);
  const compare = match && STRING_OPERATORS[match[2]!];
  if (!match || !compare)
    throw new Error(`the IAM check does not evaluate the condition operator ${operator}`);
  const [, qualifier, , ifExists] = match;
  const present = context[key.toLowerCase()];
  const values = asArray(present);
  const matches = (value: string) => policyValues.some((policy) => compare(policy, value));
  if (qualifier === 'ForAllValues') return values.every(matches);
  if (qualifier === 'ForAnyValue') return values.some(matches);
  if (present === undefined) return ifExists !== undefined;
  if (Array.isArray(present))
    throw new Error(`${operator} on ${key}, a key with several values: use ForAllValues or ForAnyValue`);
  return matches(present);
}

function statementApplies(statement: Statement, request: IamRequest): boolean {
  if (!statement.Action.some((action) => globMatch(action, request.action, true))) return false;
  if (!statement.Resource.some((resource) => globMatch(resource, request.resource))) return false;
  return Object.entries(statement.Condition ?? {}).every(([operator, keys]) =>
    Object.entries(keys).every(([key, values]) =>
      conditionHolds(operator, key, asArray(values), request.context),
    ),
  );
}

/** Whether the statements allow the request: one Allow applies and no Deny does. */
export function isAllowed(statements: readonly Statement[], request: IamRequest): boolean {
  return allowedBy(statements, request) !== undefined;
}

/** The Allow statements that grant the request, or undefined when it is refused. */
function allowedBy(statements: readonly Statement[], request: IamRequest): Statement[] | undefined {
  const applying = statements.filter((statement) => statementApplies(statement, request));
  if (applying.some((s) => s.Effect === 'Deny')) return undefined;
  const allows = applying.filter((s) => s.Effect === 'Allow');
  return allows.length > 0 ? allows : undefined;
}

// ---- What IAM sees of a call ----

/** The tables' key attributes, for dynamodb:LeadingKeys: partition key by table, and by index. */
export interface KeySchemas {
  /** `table` or `table/index/name` → the partition key's attribute name. */
  partitionKeyOf: Map<string, string>;
}

export function keySchemas(service: ResolvedService): KeySchemas {
  const partitionKeyOf = new Map<string, string>();
  const hashOf = (schema: Json[]) => schema.find((element) => element.KeyType === 'HASH')?.AttributeName;
  for (const resource of Object.values(service.resources.Resources)) {
    if (resource.Type !== 'AWS::DynamoDB::Table') continue;
    const props = resource.Properties as Json;
    partitionKeyOf.set(props.TableName, hashOf(props.KeySchema));
    for (const index of asArray<Json>(props.GlobalSecondaryIndexes))
      partitionKeyOf.set(`${props.TableName}/index/${index.IndexName}`, hashOf(index.KeySchema));
  }
  return { partitionKeyOf };
}

const EXPRESSION_KEYWORDS = new Set(['SET', 'REMOVE', 'ADD', 'DELETE', 'AND', 'OR', 'NOT', 'IN', 'BETWEEN']);
const EXPRESSION_FUNCTIONS = new Set([
  'attribute_exists',
  'attribute_not_exists',
  'attribute_type',
  'begins_with',
  'contains',
  'size',
  'if_not_exists',
  'list_append',
]);

/** The top-level attribute names an expression touches (`#n` resolved, nested paths cut at the top). */
export function expressionAttributes(expression: string | undefined, names: Record<string, string> = {}) {
  const found = new Set<string>();
  if (!expression) return found;
  for (const match of expression.matchAll(/[#:]?[A-Za-z_][A-Za-z0-9_]*/g)) {
    const token = match[0];
    const before = expression.slice(0, match.index).trimEnd().at(-1);
    if (token.startsWith(':') || before === '.') continue;
    if (token.startsWith('#')) {
      const name = names[token];
      if (name === undefined) throw new Error(`${token} is not in ExpressionAttributeNames`);
      found.add(name);
      continue;
    }
    const after = expression.slice(match.index + token.length).trimStart()[0];
    if (EXPRESSION_KEYWORDS.has(token.toUpperCase())) continue;
    if (after === '(' && EXPRESSION_FUNCTIONS.has(token)) continue;
    found.add(token);
  }
  return found;
}

/** A marshalled attribute value as the string LeadingKeys compares (S, N or B). */
const keyValue = (value: Json): string | undefined => value?.S ?? value?.N ?? value?.B;

/** Stands for "every attribute" in dynamodb:Attributes: no attribute list can hold it. */
export const EVERY_ATTRIBUTE = '*every attribute*';

interface ItemAccess {
  action: string;
  table: string;
  index?: string;
  leadingKeys?: string[];
  attributes: Set<string>;
  select?: string;
  returnValues?: string;
}

function dynamodbRequest(access: ItemAccess, region: string): IamRequest {
  const context: Context = { 'dynamodb:attributes': [...access.attributes] };
  if (access.leadingKeys) context['dynamodb:leadingkeys'] = access.leadingKeys;
  if (access.select) context['dynamodb:select'] = access.select;
  if (access.returnValues) context['dynamodb:returnvalues'] = access.returnValues;
  const table = `arn:${PARTITION}:dynamodb:${region}:${ACCOUNT}:table/${access.table}`;
  return {
    action: `dynamodb:${access.action}`,
    resource: access.index ? `${table}/index/${access.index}` : table,
    context,
  };
}

/** A read: what it projects, or every attribute (Select ALL_ATTRIBUTES) without a projection. */
function readAccess(input: Json): Pick<ItemAccess, 'attributes' | 'select'> {
  const projected = expressionAttributes(input.ProjectionExpression, input.ExpressionAttributeNames);
  for (const name of asArray<string>(input.AttributesToGet)) projected.add(name);
  const select = input.Select ?? (projected.size > 0 ? 'SPECIFIC_ATTRIBUTES' : 'ALL_ATTRIBUTES');
  if (select === 'ALL_ATTRIBUTES' || select === 'ALL_PROJECTED_ATTRIBUTES') projected.add(EVERY_ATTRIBUTE);
  return { attributes: projected, select };
}

function dynamodbRequests(operation: string, input: Json, keys: KeySchemas, region: string): IamRequest[] {
  const partitionKey = (table: string, index?: string) => {
    const name = keys.partitionKeyOf.get(index ? `${table}/index/${index}` : table);
    if (!name) throw new Error(`no key schema for ${table}${index ? ` index ${index}` : ''}`);
    return name;
  };
  const names = (item: Json) => Object.keys(item ?? {});
  /** One item by its key (Get, Update, Delete, ConditionCheck) or whole (Put). */
  const itemAccess = (action: string, item: Json): ItemAccess => {
    const table = item.TableName as string;
    const keyed = item.Key ?? item.Item;
    const attributes = new Set([
      ...names(keyed),
      ...expressionAttributes(item.UpdateExpression, item.ExpressionAttributeNames),
      ...expressionAttributes(item.ConditionExpression, item.ExpressionAttributeNames),
    ]);
    const leading = keyValue(keyed?.[partitionKey(table)]);
    const returns = ['PutItem', 'UpdateItem', 'DeleteItem'].includes(action);
    return {
      action,
      table,
      attributes,
      ...(leading !== undefined ? { leadingKeys: [leading] } : {}),
      ...(returns ? { returnValues: item.ReturnValues ?? 'NONE' } : {}),
    };
  };
  switch (operation) {
    case 'GetItem': {
      const access = itemAccess('GetItem', input);
      const read = readAccess(input);
      return [
        dynamodbRequest(
          { ...access, ...read, attributes: new Set([...access.attributes, ...read.attributes]) },
          region,
        ),
      ];
    }
    case 'PutItem':
    case 'UpdateItem':
    case 'DeleteItem':
      return [dynamodbRequest(itemAccess(operation, input), region)];
    case 'TransactWriteItems':
      return asArray<Json>(input.TransactItems).map((entry) => {
        const [kind, item] = Object.entries(entry)[0] as [string, Json];
        const action = {
          Put: 'PutItem',
          Update: 'UpdateItem',
          Delete: 'DeleteItem',
          ConditionCheck: 'ConditionCheckItem',
        }[kind];
        if (!action) throw new Error(`TransactWriteItems: no IAM action for ${kind}`);
        return dynamodbRequest(itemAccess(action, item), region);
      });
    case 'TransactGetItems':
      return asArray<Json>(input.TransactItems).map(({ Get: item }) =>
        dynamodbRequest({ ...itemAccess('GetItem', item), ...readAccess(item) }, region),
      );
    case 'BatchGetItem':
      return Object.entries(input.RequestItems as Record<string, Json>).map(([table, request]) => {
        const read = readAccess(request);
        return dynamodbRequest(
          {
            action: 'BatchGetItem',
            table,
            leadingKeys: asArray<Json>(request.Keys).map((key) => keyValue(key[partitionKey(table)])!),
            attributes: new Set([...asArray<Json>(request.Keys).flatMap(names), ...read.attributes]),
            select: read.select,
          },
          region,
        );
      });
    case 'BatchWriteItem':
      return Object.entries(input.RequestItems as Record<string, Json[]>).map(([table, writes]) => {
        const items = writes.map((write) => write.PutRequest?.Item ?? write.DeleteRequest?.Key);
        return dynamodbRequest(
          {
            action: 'BatchWriteItem',
            table,
            leadingKeys: items.map((item) => keyValue(item[partitionKey(table)])!),
            attributes: new Set(items.flatMap(names)),
          },
          region,
        );
      });
    case 'Query':
    case 'Scan': {
      const table = input.TableName as string;
      const read = readAccess(input);
      const attributes = new Set([
        ...read.attributes,
        ...expressionAttributes(input.KeyConditionExpression, input.ExpressionAttributeNames),
        ...expressionAttributes(input.FilterExpression, input.ExpressionAttributeNames),
      ]);
      let leadingKeys: string[] | undefined;
      if (operation === 'Query') {
        // The partition key's value: `<key> = :value` in the key condition.
        const key = partitionKey(table, input.IndexName);
        const aliases = Object.entries(input.ExpressionAttributeNames ?? {})
          .filter(([, name]) => name === key)
          .map(([alias]) => alias);
        for (const side of String(input.KeyConditionExpression).split(/\s+AND\s+/i)) {
          const [left, right] = side.split('=').map((part) => part.trim().replace(/^\(|\)$/g, ''));
          if (right?.startsWith(':') && (left === key || aliases.includes(left!)))
            leadingKeys = [keyValue(input.ExpressionAttributeValues?.[right])!];
        }
        if (!leadingKeys) throw new Error(`Query on ${table}: no partition key value in its key condition`);
      }
      return [
        dynamodbRequest(
          {
            action: operation,
            table,
            index: input.IndexName,
            attributes,
            select: read.select,
            ...(leadingKeys ? { leadingKeys } : {}),
          },
          region,
        ),
      ];
    }
    default:
      throw new Error(`no IAM mapping for DynamoDB ${operation}: teach tests/support/iam-audit.ts`);
  }
}

function s3Requests(operation: string, input: Json): IamRequest[] {
  const bucket = `arn:${PARTITION}:s3:::${input.Bucket}`;
  const object = (key: string) => `${bucket}/${key}`;
  const on = (action: string, resource: string, context: Context = {}): IamRequest => ({
    action: `s3:${action}`,
    resource,
    context,
  });
  switch (operation) {
    case 'GetObject':
    case 'HeadObject':
      return [on('GetObject', object(input.Key))];
    case 'PutObject':
    case 'CreateMultipartUpload':
    case 'UploadPart':
    case 'CompleteMultipartUpload':
      return [on('PutObject', object(input.Key))];
    case 'UploadPartCopy':
    case 'CopyObject': {
      // `bucket/key` (URL-encoded, maybe with ?versionId=): read there, written here.
      const source = decodeURIComponent(String(input.CopySource).split('?')[0]!).replace(/^\//, '');
      return [on('PutObject', object(input.Key)), on('GetObject', `arn:${PARTITION}:s3:::${source}`)];
    }
    case 'AbortMultipartUpload':
      return [on('AbortMultipartUpload', object(input.Key))];
    case 'ListParts':
      return [on('ListMultipartUploadParts', object(input.Key))];
    case 'DeleteObject':
      return [on('DeleteObject', object(input.Key))];
    case 'DeleteObjects':
      return asArray<Json>(input.Delete?.Objects).map(({ Key }) => on('DeleteObject', object(Key)));
    case 'GetObjectAttributes':
      return [on('GetObjectAttributes', object(input.Key))];
    case 'ListObjects':
    case 'ListObjectsV2':
      return [on('ListBucket', bucket, input.Prefix === undefined ? {} : { 's3:prefix': input.Prefix })];
    case 'HeadBucket':
      return [on('ListBucket', bucket)];
    case 'ListMultipartUploads':
      return [on('ListBucketMultipartUploads', bucket)];
    default:
      throw new Error(`no IAM mapping for S3 ${operation}: teach tests/support/iam-audit.ts`);
  }
}

/** What IAM evaluates for one recorded call: one request per action and resource it needs. */
export function iamRequestsOf(call: AuditedCall, keys: KeySchemas, region: string): IamRequest[] {
  const input = call.input as Json;
  switch (call.service) {
    case 'S3':
      return s3Requests(call.operation, input);
    case 'DynamoDB':
      return dynamodbRequests(call.operation, input, keys, region);
    case 'Lambda': {
      if (call.operation !== 'Invoke') break;
      const name = String(input.FunctionName);
      return [
        {
          action: 'lambda:InvokeFunction',
          resource: name.startsWith('arn:')
            ? name
            : `arn:${PARTITION}:lambda:${region}:${ACCOUNT}:function:${name}`,
          context: {},
        },
      ];
    }
    case 'SSM': {
      if (call.operation !== 'GetParameter') break;
      const name = String(input.Name);
      return [
        {
          action: 'ssm:GetParameter',
          resource: `arn:${PARTITION}:ssm:${region}:${ACCOUNT}:parameter${name.startsWith('/') ? '' : '/'}${name}`,
          context: {},
        },
      ];
    }
  }
  throw new Error(`no IAM mapping for ${call.service} ${call.operation}: teach tests/support/iam-audit.ts`);
}

// ---- The check ----

export interface AuditResult {
  /** Distinct calls checked, by function key. */
  checked: Map<string, number>;
  /** Calls of functions this service does not have: not checked. */
  skipped: number;
  /** Functions with statements that made no call in the run: what the check could not see. */
  unexercised: string[];
  /**
   * Actions granted to a function that made calls, which none of its calls needed: either a path
   * the run did not take, or a grant the function could do without (least privilege).
   */
  unusedGrants: string[];
  /** What the roles refuse, or what the check could not read: one line each. */
  refused: string[];
}

/**
 * A call made by a stack of another stage (the fault tests' and the soak's own stacks), read as if
 * made by `stage`'s: every name serverless.yml gives (functions, bucket, tables, parameters) is
 * `<service>-<stage>-…` or `/<service>/<stage>/…`, so that stage's names become this one's.
 */
function asStage(line: string, call: AuditedCall, service: ResolvedService, keys: readonly string[]) {
  const name = service.service;
  const key = keys.find((key) => call.function.startsWith(`${name}-`) && call.function.endsWith(`-${key}`));
  if (!key) return undefined;
  const stage = call.function.slice(name.length + 1, -(key.length + 1));
  if (stage === service.provider.stage) return { key, call };
  const ours = service.provider.stage;
  const moved = line
    .replaceAll(`${name}-${stage}-`, `${name}-${ours}-`)
    .replaceAll(`/${name}/${stage}/`, `/${name}/${ours}/`);
  return { key, call: JSON.parse(moved) as AuditedCall };
}

/** Checks every call in `auditFile` against the roles `service` gives the functions that made them. */
export function checkAuditedCalls(auditFile: string, service: ResolvedService): AuditResult {
  const region = service.provider.region;
  const roles = roleStatements(service);
  const keys = keySchemas(service);
  const result: AuditResult = {
    checked: new Map(),
    skipped: 0,
    unexercised: [],
    unusedGrants: [],
    refused: [],
  };
  const used = new Set<string>();
  const grant = (key: string, statement: Statement, action: string) =>
    `${key}: ${action} on ${statement.Resource.join(', ')}${statement.Condition ? ' (with conditions)' : ''}`;
  const functionKeys = [...roles.keys()];
  const lines = readFileSync(auditFile, 'utf8').split('\n').filter(Boolean);
  for (const line of lines) {
    const found = asStage(line, JSON.parse(line) as AuditedCall, service, functionKeys);
    if (!found) {
      result.skipped += 1;
      continue;
    }
    const { key, call } = found;
    const statements = roles.get(key)!;
    result.checked.set(key, (result.checked.get(key) ?? 0) + 1);
    const what = `${key}: ${call.service} ${call.operation}${call.presigned ? ' (presigned URL)' : ''}`;
    try {
      for (const request of iamRequestsOf(call, keys, region)) {
        const allows = allowedBy(statements, request);
        if (!allows)
          result.refused.push(
            `${what}: ${request.action} on ${request.resource} ${JSON.stringify(request.context)} is not allowed by its role`,
          );
        for (const statement of allows ?? [])
          for (const action of statement.Action)
            if (globMatch(action, request.action, true)) used.add(grant(key, statement, action));
      }
    } catch (error) {
      result.refused.push(`${what}: ${(error as Error).message}`);
    }
  }
  // One line per distinct refusal: the same call with other keys says nothing new.
  result.refused = [...new Set(result.refused)];
  result.unexercised = [...roles]
    .filter(([key, statements]) => statements.length > 0 && !result.checked.has(key))
    .map(([key]) => key);
  for (const [key, statements] of roles) {
    if (!result.checked.has(key)) continue;
    for (const statement of statements.filter((s) => s.Effect === 'Allow'))
      for (const action of statement.Action) {
        const granted = grant(key, statement, action);
        if (!used.has(granted)) result.unusedGrants.push(granted);
      }
  }
  result.unusedGrants = [...new Set(result.unusedGrants)];
  return result;
}

/**
 * The check's one line for a run's output: the stack suite's teardown names the functions it did not
 * see; the soak, which drives only some of them, leaves that out (`unseen: false`).
 */
export function auditSummary(
  { checked, skipped, unexercised, refused }: AuditResult,
  { unseen = true }: { unseen?: boolean } = {},
): string {
  const calls = [...checked.values()].reduce((sum, n) => sum + n, 0);
  return [
    `IAM check: ${calls} distinct AWS calls of ${checked.size} functions against their roles: ${refused.length ? `${refused.length} refused` : 'all allowed'}`,
    ...(skipped ? [`${skipped} calls of unknown functions not checked`] : []),
    ...(unseen && unexercised.length ? [`no call seen from ${unexercised.join(', ')}`] : []),
  ].join('; ');
}
