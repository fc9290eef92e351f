import { jsonBody } from '../../lib/http/middleware/json-body.ts';
import { httpEvent } from '../support/events.ts';
import { runAlone } from '../support/middleware.ts';

const json = (body: string | undefined) => ({
  method: 'POST',
  body,
  headers: { 'content-type': 'application/json' },
});

describe('jsonBody middleware', () => {
  it('parses a JSON object into the body', async () => {
    const { seen, error } = await runAlone(jsonBody(), json('{"a":1}'));
    expect(error).toBeUndefined();
    expect(seen?.event.body).toEqual({ a: 1 });
  });

  it.each(['[]', '42', 'null', '"text"', 'true'])(
    'refuses %s, which parses but is no object',
    async (body) => {
      const { seen, error } = await runAlone(jsonBody(), json(body));
      expect(seen).toBeUndefined();
      expect(error).toMatchObject({ status: 400, code: 'ValidationError' });
    },
  );

  it('refuses no body, unless absentIsEmpty makes it {}', async () => {
    // middy's parser refuses it with no data, which the error mapper answers as ValidationError.
    const absent = await runAlone(jsonBody(), json(undefined));
    expect(absent.seen).toBeUndefined();
    expect(absent.error).toMatchObject({ statusCode: 422, cause: { data: undefined } });
    for (const body of [undefined, '']) {
      const { seen, error } = await runAlone(jsonBody({}, true), json(body));
      expect(error).toBeUndefined();
      expect(seen?.event.body).toEqual({});
    }
  });

  it.each([
    ["API Gateway's text", { body: 'null' }],
    ['the text with spaces', { body: ' null ' }],
    // serverless-offline: the parsed null becomes no body, but the request said it had 4 bytes.
    ["serverless-offline's no body with a Content-Length", { body: undefined, length: '4' }],
    ['no body, chunked', { body: undefined, chunked: true }],
  ])('refuses a JSON null (%s) even where no body means {}', async (_case, given) => {
    const request = json(given.body);
    const headers: Record<string, string> = { ...request.headers };
    if ('length' in given && given.length) headers['Content-Length'] = given.length;
    if ('chunked' in given && given.chunked) headers['transfer-encoding'] = 'chunked';
    const { seen, error } = await runAlone(jsonBody({}, true), { ...request, headers });
    expect(seen).toBeUndefined();
    expect(error).toMatchObject({ status: 400, code: 'ValidationError' });
  });

  it('takes a Content-Length of 0 with no body as no body', async () => {
    const request = json(undefined);
    const { seen, error } = await runAlone(jsonBody({}, true), {
      ...request,
      headers: { ...request.headers, 'content-length': '0' },
    });
    expect(error).toBeUndefined();
    expect(seen?.event.body).toEqual({});
  });

  it.each([false, 0, true, 12])(
    "refuses %s that serverless-offline parsed itself, as API Gateway's text of it",
    async (value) => {
      for (const absentIsEmpty of [false, true]) {
        const event = { ...httpEvent(json(undefined)), body: value as unknown as string };
        const { seen, error } = await runAlone(jsonBody({}, absentIsEmpty), event);
        expect(seen).toBeUndefined();
        expect(error).toMatchObject({ status: 400, code: 'ValidationError' });
      }
    },
  );

  it("passes on middy's parser errors for the error mapper, and steps aside for other types when told", async () => {
    expect((await runAlone(jsonBody(), json('{"a":'))).error).toMatchObject({ statusCode: 422 });
    const form = {
      method: 'POST',
      body: 'a=1',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    };
    expect((await runAlone(jsonBody(), form)).error).toMatchObject({ statusCode: 415 });
    const aside = await runAlone(jsonBody({ disableContentTypeError: true }), form);
    expect(aside.error).toBeUndefined();
    expect(aside.seen?.event.body).toBe('a=1');
  });
});
