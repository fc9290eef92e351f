import { formBody } from '../../lib/http/middleware/form-body.ts';
import { formSizeLimit } from '../../lib/http/middleware/form-size-limit.ts';
import { runAlone } from '../support/middleware.ts';

/** A multipart/form-data body as a browser sends it. */
async function multipart(form: FormData) {
  const request = new Request('http://localhost/', { method: 'POST', body: form });
  return {
    method: 'POST',
    body: Buffer.from(await request.arrayBuffer()).toString('latin1'),
    headers: { 'content-type': request.headers.get('content-type')! },
  };
}

describe('formSizeLimit middleware', () => {
  const form = (body: string, type = 'multipart/form-data; boundary=x') => ({
    method: 'POST',
    body,
    headers: { 'content-type': type },
  });

  it('refuses a form over the limit with 413 and the given message, before any handler', async () => {
    const { error, seen } = await runAlone(formSizeLimit(10, 'forms up to 10 bytes'), form('x'.repeat(11)));
    expect(seen).toBeUndefined();
    expect(error).toMatchObject({ status: 413, code: 'PayloadTooLarge', message: 'forms up to 10 bytes' });
  });

  it('counts bytes (decoded, for base64), and leaves other content types to their parsers', async () => {
    expect((await runAlone(formSizeLimit(10, 'm'), form('x'.repeat(10)))).error).toBeUndefined();
    // Four UTF-8 bytes in two characters.
    expect((await runAlone(formSizeLimit(3, 'm'), form('éé'))).error).toMatchObject({ status: 413 });
    const base64 = { ...form(Buffer.alloc(12).toString('base64')), isBase64Encoded: true };
    const { httpEvent } = await import('../support/events.ts');
    const encoded = { ...httpEvent(base64), isBase64Encoded: true };
    expect((await runAlone(formSizeLimit(12, 'm'), encoded)).error).toBeUndefined();
    expect((await runAlone(formSizeLimit(11, 'm'), encoded)).error).toMatchObject({ status: 413 });
    expect(
      (await runAlone(formSizeLimit(1, 'm'), form('{"a":1}', 'application/json'))).error,
    ).toBeUndefined();
  });
});

describe('formBody middleware', () => {
  it('turns fields and files into a plain record', async () => {
    const data = new FormData();
    data.set('overwrite', 'true');
    data.set('__proto__', 'just a field');
    data.set('file', new Blob(['hello'], { type: 'text/plain' }), 'a.txt');
    const { seen, error } = await runAlone(formBody(), await multipart(data));
    expect(error).toBeUndefined();
    const body = seen!.event.body as unknown as Record<string, unknown>;
    expect(Object.getPrototypeOf(body)).toBeNull();
    expect(body.overwrite).toBe('true');
    expect(Object.getOwnPropertyDescriptor(body, '__proto__')?.value).toBe('just a field');
    expect(body.file).toEqual({ filename: 'a.txt', mimetype: 'text/plain', content: Buffer.from('hello') });
  });

  it('answers 400 MalformedForm for a body that does not parse, and leaves JSON alone', async () => {
    const broken = {
      method: 'POST',
      body: 'no parts here',
      headers: { 'content-type': 'multipart/form-data; boundary=zz' },
    };
    expect((await runAlone(formBody(), broken)).error).toMatchObject({ status: 400, code: 'MalformedForm' });
    const json = { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json' } };
    const { seen } = await runAlone(formBody(), json);
    expect(seen?.event.body).toBe('{"a":1}');
  });
});
