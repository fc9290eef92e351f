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

  it('refuses no body, unless absentIsEmpty makes it (or a JSON null) {}', async () => {
    // middy's parser refuses it with no data, which the error mapper answers as ValidationError.
    const absent = await runAlone(jsonBody(), json(undefined));
    expect(absent.seen).toBeUndefined();
    expect(absent.error).toMatchObject({ statusCode: 422, cause: { data: undefined } });
    for (const body of [undefined, '', 'null', ' null ']) {
      const { seen, error } = await runAlone(jsonBody({}, true), json(body));
      expect(error).toBeUndefined();
      expect(seen?.event.body).toEqual({});
    }
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
