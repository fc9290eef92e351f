import { HttpError } from '../../lib/http/errors.ts';
import { concretePaths } from '../../lib/http/middleware/concrete-paths.ts';
import { runAlone } from '../support/middleware.ts';

describe('concretePaths middleware', () => {
  it("refuses a concrete path that reached a template's route with a method the path does not take", async () => {
    // API Gateway hands DELETE /export/kill to DELETE /export/{jobId}; /export/kill takes POST only.
    const { error, seen } = await runAlone(concretePaths(), { method: 'DELETE', path: '/export/kill' });
    expect(seen).toBeUndefined();
    expect(error).toBeInstanceOf(HttpError);
    expect(error).toMatchObject({ status: 405, code: 'MethodNotAllowed' });
    expect((error as unknown as HttpError).headers.allow).toBe('POST');
  });

  it('lets through the method the concrete path takes, and template paths', async () => {
    for (const [method, path] of [
      ['POST', '/export/kill'],
      ['DELETE', '/export/01ARZ3NDEKTSV4RRFFQ69G5FAV'],
    ] as const) {
      const { error, seen } = await runAlone(concretePaths(), { method, path });
      expect(error).toBeUndefined();
      expect(seen?.event.rawPath).toBe(path);
    }
  });
});
