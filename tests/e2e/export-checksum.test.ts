import { randomBytes } from 'node:crypto';
import { checksumOf } from '../../common/checksums.ts';
import { MiB } from '../../common/part-plan.ts';
import { api } from '../support/http.ts';
import { testBucket } from '../support/s3.ts';
import { testStack } from '../support/stack-env.ts';
import { createTestUser } from '../support/users.ts';

/**
 * Over HTTP, as a client sees it: POST /export, the worker started through Lambda's invoke API,
 * GET /jobs/{jobId} until SUCCEEDED, then the download. The checksum the job shows is the CRC32 of
 * the downloaded bytes. moto gives multipart outputs no checksum (it neither checks nor lists part
 * checksums), so this runs where S3 does as AWS does: LocalStack (TEST_EMULATOR=localstack npm test).
 */

const s3 = testStack().emulator?.s3;
const describeOnCheckingS3 = s3 === 'localstack' ? describe : describe.skip;
const title =
  s3 === 'localstack'
    ? 'export checksums over HTTP (LocalStack)'
    : `export checksums over HTTP (skipped: S3 here is ${s3 ?? 'unknown'}, which gives multipart outputs no checksum; run TEST_EMULATOR=localstack npm test)`;

describeOnCheckingS3(title, () => {
  it.each(['raw', 'gzip'] as const)(
    'GET /jobs/{jobId} of a SUCCEEDED %s export shows the CRC32 of the download',
    async (format) => {
      const user = await createTestUser('sum');
      const jwt = await user.token();
      await testBucket().putObject(`uploads/${user.username}/data.bin`, randomBytes(12 * MiB + 5));
      const started = await api('/export', {
        method: 'POST',
        token: jwt,
        body: { filename: 'data.bin', format },
      });
      expect(started.status).toBe(202);

      const deadline = Date.now() + 45_000;
      let job = started.body.job;
      while (['QUEUED', 'RUNNING'].includes(job.status) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        job = (await api(`/jobs/${job.jobId}`, { token: jwt })).body.job;
      }
      expect(job.status).toBe('SUCCEEDED');
      const download = Buffer.from(await (await fetch(job.downloadUrl)).arrayBuffer());
      expect(job.checksum).toEqual({
        algorithm: 'CRC32',
        type: 'FULL_OBJECT',
        value: await checksumOf('CRC32', download),
      });
    },
  );
});
