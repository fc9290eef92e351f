import { randomBytes } from 'node:crypto';
import { DEMO_USER } from '../../scripts/local-stack.ts';
import { api } from '../support/http.ts';
import { capturedLog, handlerLogLines, secretsIn } from '../support/logs.ts';
import { putPart } from '../support/s3.ts';
import { createTestUser } from '../support/users.ts';

/** What the handlers write to their logs, read from serverless-offline's captured output. */
describe('handler logs', () => {
  let username: string;
  let jobId: string;

  beforeAll(async () => {
    const user = await createTestUser('logs');
    username = user.username;
    await api('/auth/signin', { method: 'POST', body: { username, password: 'wrong-password-123' } });
    await api('/auth/signin', { method: 'POST', body: DEMO_USER });
    const token = await user.token();
    await api('/files', { headers: { auth_token: token } });
    await api('/jobs', { token: `${token}x` });
    const created = await api('/upload', {
      method: 'POST',
      token,
      body: { filename: 'logged.bin', size: 8 },
    });
    jobId = created.body.job.jobId;
    await putPart(created.body.parts[0].url, randomBytes(8));
    await api(`/upload/${jobId}/complete`, { method: 'POST', token });
    await api(`/jobs/${jobId}`, { token });
    // Give serverless-offline a moment to pass the last lines on.
    await new Promise((resolve) => setTimeout(resolve, 300));
  });

  it('hold no password and no token', () => {
    expect(secretsIn(capturedLog())).toEqual([]);
  });

  it('are structured JSON with the request id, and the username once signed in', () => {
    const lines = handlerLogLines().filter((line) => line.username === username);
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) {
      expect(line).toMatchObject({
        level: expect.any(String),
        service: 'file-jobs',
        requestId: expect.any(String),
      });
    }
  });

  it('carry the job id on every line about a job', () => {
    const aboutTheJob = handlerLogLines().filter(
      (line) =>
        typeof line.route === 'string' && line.route.includes('{jobId}') && line.username === username,
    );
    expect(aboutTheJob.length).toBeGreaterThan(0);
    for (const line of aboutTheJob) expect(line.jobId).toBe(jobId);
  });

  it('include embedded metrics for started and completed uploads', () => {
    const metrics = handlerLogLines().filter((line) => line._aws?.CloudWatchMetrics);
    const names = metrics.flatMap((line) =>
      line._aws.CloudWatchMetrics.flatMap((m: any) => m.Metrics.map((x: any) => x.Name)),
    );
    expect(names).toEqual(expect.arrayContaining(['UploadsStarted', 'UploadsCompleted', 'BytesUploaded']));
  });
});
