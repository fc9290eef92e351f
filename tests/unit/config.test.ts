import { ConfigError, loadConfig } from '../../lib/config.ts';

const base = { FILES_BUCKET: 'files-bucket', JOBS_TABLE: 'jobs-table', USERS_TABLE: 'users-table' };

describe('configuration from the environment', () => {
  it('applies defaults and uses the real AWS endpoints when none is given', () => {
    const config = loadConfig(base);
    expect(config).toMatchObject({
      stage: 'local',
      region: 'us-east-1',
      bucket: 'files-bucket',
      jobsTable: 'jobs-table',
      usersTable: 'users-table',
      endpoints: { s3: undefined, dynamodb: undefined, lambda: undefined },
      presignTtlSeconds: 900,
      tokens: { issuer: 'file-jobs/local', audience: 'file-jobs', ttlSeconds: 3600 },
      keys: { inline: undefined, file: undefined, parameter: undefined, publicParameter: undefined },
      signin: { maxFailuresPerUser: 5, maxFailuresPerIp: 50, lockSeconds: 30 },
      exports: {
        workerFunction: 'file-jobs-local-exportWorker',
        partSize: 64 * 1024 * 1024,
        maxRunning: 3,
        invocationBudgetSeconds: 780,
        leaseSeconds: 180,
        restartDelaySeconds: 5,
        downloadTtlSeconds: 3600,
      },
      janitor: {
        uploadIdleSeconds: 86_400,
        stuckSeconds: 900,
        orphanGraceSeconds: 21_600,
        maxExportRestarts: 4,
      },
    });
  });

  it('reads per-service endpoints, falling back to AWS_ENDPOINT_URL', () => {
    expect(loadConfig({ ...base, AWS_ENDPOINT_URL: 'http://127.0.0.1:4566' }).endpoints).toEqual({
      s3: 'http://127.0.0.1:4566',
      dynamodb: 'http://127.0.0.1:4566',
      lambda: 'http://127.0.0.1:4566',
    });
    expect(
      loadConfig({
        ...base,
        AWS_ENDPOINT_URL: 'http://127.0.0.1:4566',
        AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:5000',
        AWS_ENDPOINT_URL_LAMBDA: 'http://127.0.0.1:3002',
      }).endpoints,
    ).toEqual({
      s3: 'http://127.0.0.1:5000',
      dynamodb: 'http://127.0.0.1:4566',
      lambda: 'http://127.0.0.1:3002',
    });
  });

  it('treats empty values (unset serverless.yml variables) as absent', () => {
    const config = loadConfig({ ...base, AWS_ENDPOINT_URL_S3: '', PRESIGN_TTL_SECONDS: '', STAGE: '' });
    expect(config.endpoints.s3).toBeUndefined();
    expect(config.presignTtlSeconds).toBe(900);
    expect(config.stage).toBe('local');
  });

  it('parses numbers and rejects out-of-range ones', () => {
    expect(loadConfig({ ...base, PRESIGN_TTL_SECONDS: '3600' }).presignTtlSeconds).toBe(3600);
    expect(() => loadConfig({ ...base, PRESIGN_TTL_SECONDS: '5' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...base, PRESIGN_TTL_SECONDS: 'soon' })).toThrow(/PRESIGN_TTL_SECONDS/);
  });

  it('per-user limits: generous defaults, each settable, none unbounded', () => {
    expect(loadConfig(base).limits).toEqual({
      uploadsInFlight: 20,
      uploadBytesInFlight: 1024 ** 4,
      jobsPerMinute: 60,
    });
    expect(
      loadConfig({
        ...base,
        UPLOAD_MAX_IN_FLIGHT: '2',
        UPLOAD_MAX_GIB_IN_FLIGHT: '1',
        JOBS_MAX_PER_MINUTE: '5',
      }).limits,
    ).toEqual({ uploadsInFlight: 2, uploadBytesInFlight: 1024 ** 3, jobsPerMinute: 5 });
    expect(loadConfig({ ...base, JOBS_MAX_PER_MINUTE: '' }).limits.jobsPerMinute).toBe(60);
    expect(() => loadConfig({ ...base, UPLOAD_MAX_IN_FLIGHT: '0' })).toThrow(/UPLOAD_MAX_IN_FLIGHT/);
  });

  it('names every missing or malformed variable in one error', () => {
    expect(() => loadConfig({ AWS_ENDPOINT_URL_S3: 'not a url' })).toThrow(
      /FILES_BUCKET.*JOBS_TABLE.*USERS_TABLE.*AWS_ENDPOINT_URL_S3/s,
    );
  });
});
