import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import type {
  CancelledExports,
  CreatedUpload,
  ErrorBody,
  ExportJob,
  Health,
  Job,
  JobsPage,
  KilledUploads,
  ReconciledJob,
  SignedPart,
  SignInResult,
  StoredFile,
} from '../../client/types.ts';
import { openApiDocument } from '../../lib/openapi/document.ts';
import type * as responses from '../../lib/openapi/responses.ts';
import type * as z from '../../lib/schema.ts';

/**
 * The client's types (client/types.ts) are written by hand, for readers, beside the OpenAPI document
 * generated from the server's schemas. Two ties keep them in step:
 * - at compile time (`npm run typecheck`): every answer the server's schemas allow is assignable to
 *   the client's type for it, and both have the same property names, optional in both or in neither;
 * - here: the same names and optionality, read from client/types.ts by the TypeScript compiler and
 *   from the document as served.
 */
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Fields of the document's job that only an export has: ExportJob declares them, Job does not. */
const EXPORT_ONLY = ['format', 'outputSize', 'downloadUrl', 'expiresAt'] as const;

// ---- compile time ----------------------------------------------------------------------------------

type Wire<S extends z.ZodMiniType> = z.output<S>;
type WireJob = Wire<typeof responses.jobSchema>;

type OptionalKeys<T> = { [K in keyof T]-?: object extends Pick<T, K> ? K : never }[keyof T];
/** Each kind of drift between two object types: `true` where there is none, else the keys. */
type Drift<Client, Server> = {
  [K in keyof DriftKeys<Client, Server>]: [DriftKeys<Client, Server>[K]] extends [never]
    ? true
    : DriftKeys<Client, Server>[K];
};
type DriftKeys<Client, Server> = {
  onlyInClient: Exclude<keyof Client, keyof Server>;
  onlyInDocument: Exclude<keyof Server, keyof Client>;
  optionalOnlyInClient: Exclude<OptionalKeys<Client>, OptionalKeys<Server>> & keyof Server;
  optionalOnlyInDocument: Exclude<OptionalKeys<Server>, OptionalKeys<Client>> & keyof Client;
};
const NO_DRIFT = {
  onlyInClient: true,
  onlyInDocument: true,
  optionalOnlyInClient: true,
  optionalOnlyInDocument: true,
} as const;
/** Fails to compile, naming the keys, when the two types' property names or optionality differ. */
const sameKeys = <Client, Server>(_: Drift<Client, Server>) => {};

// A compile error on any line below names the drift: the keys in place of `true`.
sameKeys<SignInResult, Wire<typeof responses.tokenResponse>>(NO_DRIFT);
sameKeys<Health, Wire<typeof responses.healthResponse>>(NO_DRIFT);
sameKeys<Job, Omit<WireJob, (typeof EXPORT_ONLY)[number]>>(NO_DRIFT);
sameKeys<Job['progress'], WireJob['progress']>(NO_DRIFT);
sameKeys<NonNullable<Job['checksum']>, NonNullable<WireJob['checksum']>>(NO_DRIFT);
sameKeys<Omit<ExportJob, 'format'>, Omit<WireJob, 'format'>>(NO_DRIFT);
sameKeys<CreatedUpload, Wire<typeof responses.createUploadResponse>>(NO_DRIFT);
sameKeys<SignedPart, Wire<typeof responses.signedPartsResponse>['parts'][number]>(NO_DRIFT);
sameKeys<ReconciledJob, Wire<typeof responses.reconcileResponse>>(NO_DRIFT);
sameKeys<
  NonNullable<ReconciledJob['parts']>[number],
  NonNullable<Wire<typeof responses.reconcileResponse>['parts']>[number]
>(NO_DRIFT);
sameKeys<JobsPage, Wire<typeof responses.jobsPageResponse>>(NO_DRIFT);
sameKeys<StoredFile, Wire<typeof responses.filesResponse>['files'][number]>(NO_DRIFT);
sameKeys<KilledUploads['aborted'][number], Wire<typeof responses.killUploadsResponse>['aborted'][number]>(
  NO_DRIFT,
);
sameKeys<
  CancelledExports['cancelled'][number],
  Wire<typeof responses.killExportsResponse>['cancelled'][number]
>(NO_DRIFT);
sameKeys<ErrorBody['error'], Wire<typeof responses.errorResponse>['error']>(NO_DRIFT);

/** Fails to compile where an answer the server's schema allows is not one the client's type reads. */
const clientReads =
  <Client>() =>
  <_Server extends Client>() => {};

clientReads<SignInResult>()<Wire<typeof responses.tokenResponse>>();
clientReads<Health>()<Wire<typeof responses.healthResponse>>();
clientReads<{ job: Job }>()<Wire<typeof responses.jobResponse>>();
clientReads<ExportJob>()<WireJob & Pick<ExportJob, 'type' | 'format'>>();
clientReads<CreatedUpload>()<Wire<typeof responses.createUploadResponse>>();
clientReads<{ parts: SignedPart[] }>()<Wire<typeof responses.signedPartsResponse>>();
clientReads<ReconciledJob>()<Wire<typeof responses.reconcileResponse>>();
clientReads<JobsPage>()<Wire<typeof responses.jobsPageResponse>>();
clientReads<{ files: StoredFile[] }>()<Wire<typeof responses.filesResponse>>();
clientReads<KilledUploads>()<Wire<typeof responses.killUploadsResponse>>();
clientReads<CancelledExports>()<Wire<typeof responses.killExportsResponse>>();
clientReads<ErrorBody>()<Wire<typeof responses.errorResponse>>();

// ---- against the document ----------------------------------------------------------------------------

interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  anyOf?: JsonSchema[];
}
/** Property name -> optional, sorted by name. */
type Shape = Record<string, boolean>;

const sorted = (entries: [string, boolean][]): Shape =>
  Object.fromEntries(entries.sort(([a], [b]) => a.localeCompare(b)));

function documentShape(schema: JsonSchema | undefined): Shape {
  if (!schema?.properties) throw new Error(`not an object schema: ${JSON.stringify(schema)?.slice(0, 200)}`);
  const required = new Set(schema.required ?? []);
  return sorted(Object.keys(schema.properties).map((name) => [name, !required.has(name)]));
}

/** The shapes of client/types.ts's exported types, as the compiler sees them (inherited members too). */
function clientShapes(file: string): (name: string, path?: string[]) => Shape {
  const program = ts.createProgram([file], {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    allowImportingTsExtensions: true,
    noEmit: true,
    strict: true,
    types: [],
  });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(file)!;
  const exports = checker.getExportsOfModule(checker.getSymbolAtLocation(source)!);
  return (name, path = []) => {
    let symbol = exports.find((candidate) => candidate.name === name);
    if (!symbol) throw new Error(`client/types.ts exports no ${name}`);
    if (symbol.flags & ts.SymbolFlags.Alias) symbol = checker.getAliasedSymbol(symbol);
    let type = checker.getDeclaredTypeOfSymbol(symbol);
    // Down a property (`progress`) or into an array's element (`[]`), past `| undefined`.
    for (const step of path) {
      type = checker.getNonNullableType(type);
      if (step === '[]') type = checker.getIndexTypeOfType(type, ts.IndexKind.Number)!;
      else type = checker.getTypeOfSymbol(checker.getPropertyOfType(type, step)!);
    }
    type = checker.getNonNullableType(type);
    return sorted(
      checker
        .getPropertiesOfType(type)
        .map((property) => [property.name, (property.flags & ts.SymbolFlags.Optional) !== 0]),
    );
  };
}

describe("the client's types and the OpenAPI document", () => {
  const document = openApiDocument() as {
    paths: Record<
      string,
      Record<string, { responses: Record<string, { content?: Record<string, { schema: JsonSchema }> }> }>
    >;
    components: { schemas: Record<string, JsonSchema> };
  };
  const answer = (route: string, status: number): JsonSchema => {
    const [method, path] = route.split(' ') as [string, string];
    const schema =
      document.paths[path]?.[method.toLowerCase()]?.responses[status]?.content?.['application/json']?.schema;
    if (!schema) throw new Error(`the document has no JSON answer ${status} to ${route}`);
    return schema;
  };
  const property = (schema: JsonSchema, ...path: string[]) =>
    path.reduce<JsonSchema>((at, step) => (step === '[]' ? at.items! : at.properties![step]!), schema);

  const client = clientShapes(join(root, 'client', 'types.ts'));
  const job = property(answer('GET /jobs/{jobId}', 200), 'job');
  const withoutExportFields = (shape: Shape) =>
    Object.fromEntries(
      Object.entries(shape).filter(([name]) => !(EXPORT_ONLY as readonly string[]).includes(name)),
    );

  // [the client's type (and a path into it), the document's schema for it]
  const pairs: [string, string[], JsonSchema][] = [
    ['SignInResult', [], answer('POST /auth/signin', 200)],
    ['Health', [], answer('GET /health', 200)],
    ['JobProgress', [], property(job, 'progress')],
    ['Checksum', [], property(job, 'checksum')],
    ['CreatedUpload', [], answer('POST /upload', 201).anyOf![0]!],
    ['SignedPart', [], property(answer('POST /upload/{jobId}/parts', 200), 'parts', '[]')],
    ['SignedPart', [], property(answer('POST /upload', 201).anyOf![0]!, 'parts', '[]')],
    ['ReconciledJob', [], answer('GET /jobs/{jobId}', 200)],
    ['StoredPart', [], property(answer('GET /jobs/{jobId}', 200), 'parts', '[]')],
    ['JobsPage', [], answer('GET /jobs', 200)],
    ['StoredFile', [], property(answer('GET /files', 200), 'files', '[]')],
    ['StoredFile', [], property(answer('POST /upload', 201).anyOf![1]!, 'file')],
    ['KilledUploads', [], answer('DELETE /upload/kill', 200)],
    ['KilledUploads', ['aborted', '[]'], property(answer('DELETE /upload/kill', 200), 'aborted', '[]')],
    ['CancelledExports', [], answer('POST /export/kill', 200)],
    ['CancelledExports', ['cancelled', '[]'], property(answer('POST /export/kill', 200), 'cancelled', '[]')],
    ['ErrorBody', [], document.components.schemas.Error!],
    ['ErrorBody', ['error'], property(document.components.schemas.Error!, 'error')],
  ];

  it.each(pairs)('%s %j has the names and optionality of the document', (name, path, schema) => {
    expect(client(name, path)).toEqual(documentShape(schema));
  });

  it("Job is the document's job without the fields only an export has", () => {
    for (const schema of [job, property(answer('POST /upload/{jobId}/complete', 200), 'job')])
      expect(client('Job')).toEqual(withoutExportFields(documentShape(schema)));
    // ExportJob adds them; every export has a format, which the document cannot say of every job.
    expect(client('ExportJob')).toEqual({
      ...documentShape(property(answer('POST /export', 202), 'job')),
      format: false,
    });
  });

  it('covers every answer type client/types.ts declares', () => {
    const requests = ['CreateUploadInput', 'PartToSign', 'FinishedPart', 'JobsQuery'];
    const checked = new Set([...pairs.map(([name]) => name), 'Job', 'ExportJob', ...requests]);
    const declared = ts
      .createSourceFile(
        'types.ts',
        ts.sys.readFile(join(root, 'client', 'types.ts'))!,
        ts.ScriptTarget.ES2022,
      )
      .statements.filter((statement) => ts.isInterfaceDeclaration(statement))
      .map((statement) => statement.name.text);
    expect(declared.filter((name) => !checked.has(name))).toEqual([]);
  });
});
