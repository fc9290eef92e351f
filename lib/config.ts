import { availableParallelism } from 'node:os';
import * as z from './schema.ts';
import { MAX_PRESIGN_SECONDS } from './storage/presign-limits.ts';

/**
 * Configuration comes from the environment only: serverless.yml sets it in AWS, the local stack
 * (scripts/local-stack.ts) sets it for serverless-offline and the tests. Parsed once per container.
 */

const seconds = (min: number, max: number) => z.coerce.number().check(z.int(), z.gte(min), z.lte(max));

const count = (min: number, max: number) => z.coerce.number().check(z.int(), z.gte(min), z.lte(max));

/** The largest export windows allowed: a gzip worker's memory grows with them (see config.exports). */
export const EXPORT_WINDOW_LIMITS = { copy: 32, gzipThreads: 16, gzipUploads: 16 } as const;

const envSchema = z.object({
  STAGE: z._default(z.string().check(z.minLength(1)), 'local'),
  AWS_REGION: z._default(z.string().check(z.minLength(1)), 'us-east-1'),
  FILES_BUCKET: z.string().check(z.minLength(3)),
  JOBS_TABLE: z.string().check(z.minLength(3)),
  USERS_TABLE: z.string().check(z.minLength(3)),
  AWS_ENDPOINT_URL: z.optional(z.url()),
  AWS_ENDPOINT_URL_S3: z.optional(z.url()),
  AWS_ENDPOINT_URL_DYNAMODB: z.optional(z.url()),
  AWS_ENDPOINT_URL_LAMBDA: z.optional(z.url()),
  EXPORT_WORKER_FUNCTION: z._default(z.string().check(z.minLength(1)), 'file-jobs-local-exportWorker'),
  EXPORT_PART_SIZE_MIB: z._default(count(5, 5120), 64),
  EXPORT_MAX_RUNNING: z._default(count(1, 1000), 3),
  UPLOAD_MAX_IN_FLIGHT: z._default(count(1, 10_000), 20),
  UPLOAD_MAX_GIB_IN_FLIGHT: z._default(count(1, 1024 * 1024), 1024),
  JOBS_MAX_PER_MINUTE: z._default(count(1, 100_000), 60),
  EXPORT_INVOCATION_BUDGET_SECONDS: z._default(seconds(0, 900), 780),
  EXPORT_LEASE_SECONDS: z._default(seconds(10, 3600), 180),
  EXPORT_RESTART_DELAY_SECONDS: z._default(seconds(0, 120), 5),
  EXPORT_COPY_WINDOW: z._default(count(1, EXPORT_WINDOW_LIMITS.copy), 4),
  EXPORT_GZIP_THREADS: z.optional(count(1, EXPORT_WINDOW_LIMITS.gzipThreads)),
  EXPORT_GZIP_UPLOADS: z._default(count(1, EXPORT_WINDOW_LIMITS.gzipUploads), 2),
  DOWNLOAD_TTL_SECONDS: z._default(seconds(60, MAX_PRESIGN_SECONDS), 3600),
  JANITOR_UPLOAD_IDLE_HOURS: z._default(count(1, 24 * 365), 24),
  JANITOR_STUCK_MINUTES: z._default(count(1, 24 * 60), 15),
  JANITOR_ORPHAN_GRACE_HOURS: z._default(count(1, 24 * 30), 6),
  JANITOR_MAX_EXPORT_RESTARTS: z._default(count(0, 100), 4),
  PRESIGN_TTL_SECONDS: z._default(seconds(60, MAX_PRESIGN_SECONDS), 900),
  JWT_ISSUER: z.optional(z.string().check(z.minLength(1))),
  JWT_AUDIENCE: z._default(z.string().check(z.minLength(1)), 'file-jobs'),
  JWT_TTL_SECONDS: z._default(seconds(60, 24 * 3600), 3600),
  SESSION_MAX_HOURS: z._default(count(1, 24 * 365), 168),
  JWT_KEYS: z.optional(z.string()),
  JWT_KEYS_FILE: z.optional(z.string()),
  JWT_KEYS_PARAMETER: z.optional(z.string()),
  JWT_PUBLIC_KEYS_PARAMETER: z.optional(z.string()),
  JWT_KEYS_MAX_AGE_SECONDS: z._default(seconds(1, 24 * 3600), 300),
  JWT_KEYS_UNKNOWN_KID_REFRESH_SECONDS: z._default(seconds(1, 3600), 5),
  AUTH_USER_CACHE_SECONDS: z._default(seconds(0, 3600), 30),
  JOB_RETENTION_DAYS: z._default(count(1, 3650), 30),
  SIGNIN_MAX_FAILURES_PER_USER: z._default(count(1, 1000), 5),
  SIGNIN_MAX_FAILURES_PER_IP: z._default(count(1, 100_000), 50),
  SIGNIN_LOCK_SECONDS: z._default(seconds(1, 24 * 3600), 30),
});

export interface Config {
  stage: string;
  region: string;
  bucket: string;
  jobsTable: string;
  usersTable: string;
  /** Emulator or custom endpoints; undefined means the real AWS endpoint for the region. */
  endpoints: { s3?: string | undefined; dynamodb?: string | undefined; lambda?: string | undefined };
  presignTtlSeconds: number;
  /** How long finished jobs stay readable before their TTL removes them. */
  jobRetentionSeconds: number;
  tokens: { issuer: string; audience: string; ttlSeconds: number };
  /**
   * How long one sign-in lasts: its tokens are renewed (POST /auth/renew, POST /auth/session/renew)
   * up to this long after the password was checked, never past it.
   */
  sessionMaxSeconds: number;
  /** Where the JWT signing keys come from; the first one set wins (see lib/auth/keys.ts). */
  keys: {
    inline?: string | undefined;
    file?: string | undefined;
    /** The private keyset (SSM SecureString): only sign-in reads it. */
    parameter?: string | undefined;
    /** The public keys (a JWKS) that every other function verifies with. */
    publicParameter?: string | undefined;
    /** A container re-reads its keys once they are this old: how long a rotation takes to reach it. */
    maxAgeSeconds: number;
    /** A token naming a key the container does not know re-reads the keys at once, at most this often. */
    unknownKidRefreshSeconds: number;
  };
  /**
   * How long a container trusts what it read of a user's record (existence, token version): how long
   * a removed user's, or a revoked, token may still be accepted. 0 reads it on every request.
   */
  userCacheSeconds: number;
  signin: { maxFailuresPerUser: number; maxFailuresPerIp: number; lockSeconds: number };
  /**
   * Per-user limits on new jobs, enforced in the job-create transaction (lib/jobs/limits.ts); the
   * running-exports limit is `exports.maxRunning`.
   */
  limits: {
    /** Uploads not yet finished (UPLOADING or COMPLETING). */
    uploadsInFlight: number;
    /** The declared sizes of those uploads, summed. */
    uploadBytesInFlight: number;
    /** Jobs (uploads and exports) created per calendar minute. */
    jobsPerMinute: number;
  };
  exports: {
    workerFunction: string;
    partSize: number;
    maxRunning: number;
    /** Seconds one worker invocation works before it checkpoints and continues in a new one. */
    invocationBudgetSeconds: number;
    leaseSeconds: number;
    /**
     * A worker interrupted by an error a retry may get past restarts itself after this pause, the
     * first time since its last finished part; later stops in a row wait for the janitor.
     */
    restartDelaySeconds: number;
    downloadTtlSeconds: number;
    /** Raw exports: UploadPartCopy calls in flight. */
    copyWindow: number;
    /**
     * Gzip exports: slices compressing at once (one core each; the function's cores unless set) and
     * compressed parts uploading at once. Memory: below the source steps of threads + 2 slices of at
     * most 8 MiB and the step after them, those slices' members, and (uploads + 2) parts
     * (lib/exports/gzip-members.ts).
     */
    gzipWindow: { threads: number; uploads: number };
  };
  janitor: {
    uploadIdleSeconds: number;
    stuckSeconds: number;
    orphanGraceSeconds: number;
    maxExportRestarts: number;
  };
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // `${env:X, ''}` in serverless.yml yields empty strings for unset values: treat them as absent.
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== ''));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  }
  const e = parsed.data;
  return {
    stage: e.STAGE,
    region: e.AWS_REGION,
    bucket: e.FILES_BUCKET,
    jobsTable: e.JOBS_TABLE,
    usersTable: e.USERS_TABLE,
    endpoints: {
      s3: e.AWS_ENDPOINT_URL_S3 ?? e.AWS_ENDPOINT_URL,
      dynamodb: e.AWS_ENDPOINT_URL_DYNAMODB ?? e.AWS_ENDPOINT_URL,
      lambda: e.AWS_ENDPOINT_URL_LAMBDA ?? e.AWS_ENDPOINT_URL,
    },
    presignTtlSeconds: e.PRESIGN_TTL_SECONDS,
    jobRetentionSeconds: e.JOB_RETENTION_DAYS * 24 * 3600,
    tokens: {
      issuer: e.JWT_ISSUER ?? `file-jobs/${e.STAGE}`,
      audience: e.JWT_AUDIENCE,
      ttlSeconds: e.JWT_TTL_SECONDS,
    },
    sessionMaxSeconds: e.SESSION_MAX_HOURS * 3600,
    keys: {
      inline: e.JWT_KEYS,
      file: e.JWT_KEYS_FILE,
      parameter: e.JWT_KEYS_PARAMETER,
      publicParameter: e.JWT_PUBLIC_KEYS_PARAMETER,
      maxAgeSeconds: e.JWT_KEYS_MAX_AGE_SECONDS,
      unknownKidRefreshSeconds: e.JWT_KEYS_UNKNOWN_KID_REFRESH_SECONDS,
    },
    userCacheSeconds: e.AUTH_USER_CACHE_SECONDS,
    exports: {
      workerFunction: e.EXPORT_WORKER_FUNCTION,
      partSize: e.EXPORT_PART_SIZE_MIB * 1024 * 1024,
      maxRunning: e.EXPORT_MAX_RUNNING,
      invocationBudgetSeconds: e.EXPORT_INVOCATION_BUDGET_SECONDS,
      leaseSeconds: e.EXPORT_LEASE_SECONDS,
      restartDelaySeconds: e.EXPORT_RESTART_DELAY_SECONDS,
      downloadTtlSeconds: e.DOWNLOAD_TTL_SECONDS,
      copyWindow: e.EXPORT_COPY_WINDOW,
      gzipWindow: {
        threads: e.EXPORT_GZIP_THREADS ?? availableParallelism(),
        uploads: e.EXPORT_GZIP_UPLOADS,
      },
    },
    janitor: {
      uploadIdleSeconds: e.JANITOR_UPLOAD_IDLE_HOURS * 3600,
      stuckSeconds: e.JANITOR_STUCK_MINUTES * 60,
      orphanGraceSeconds: e.JANITOR_ORPHAN_GRACE_HOURS * 3600,
      maxExportRestarts: e.JANITOR_MAX_EXPORT_RESTARTS,
    },
    limits: {
      uploadsInFlight: e.UPLOAD_MAX_IN_FLIGHT,
      uploadBytesInFlight: e.UPLOAD_MAX_GIB_IN_FLIGHT * 1024 ** 3,
      jobsPerMinute: e.JOBS_MAX_PER_MINUTE,
    },
    signin: {
      maxFailuresPerUser: e.SIGNIN_MAX_FAILURES_PER_USER,
      maxFailuresPerIp: e.SIGNIN_MAX_FAILURES_PER_IP,
      lockSeconds: e.SIGNIN_LOCK_SECONDS,
    },
  };
}

let current: Config | undefined;

/** The process-wide configuration, parsed from `process.env` on first use. */
export function config(): Config {
  current ??= loadConfig();
  return current;
}
