import { randomUUID } from 'node:crypto';
import { contentDisposition } from '../../lib/storage/file-store.ts';
import { fileStore } from '../../lib/storage/index.ts';
import { testStack } from '../support/stack-env.ts';

/**
 * The name an export downloads under travels in the presigned URL (response-content-disposition)
 * and comes back from S3 as the Content-Disposition header: RFC 6266, an ASCII fallback in
 * `filename="…"` and the exact name in `filename*=UTF-8''…` (RFC 5987 / 8187). moto 5 ignores the
 * response-* overrides of a GET (it answers no Content-Disposition at all), so S3's header is checked
 * where S3 honours them as AWS does: LocalStack (TEST_EMULATOR=localstack npm test).
 */

const s3 = testStack().emulator?.s3;
const honoursOverrides = s3 === 'localstack';

/** What a browser takes from the header: filename* first (decoded), else the quoted fallback. */
function nameFrom(header: string): { fallback: string; exact: string | undefined } {
  const quoted = /(?:^|;)\s*filename="((?:[^"\\]|\\.)*)"/.exec(header);
  const extended = /(?:^|;)\s*filename\*=UTF-8''([^;\s]+)/i.exec(header);
  return {
    fallback: quoted ? quoted[1]!.replace(/\\(.)/g, '$1') : '',
    exact: extended ? decodeURIComponent(extended[1]!) : undefined,
  };
}

const names = [
  'plain.txt',
  'quote"d.txt',
  'back\\slash.txt',
  'semi;colon.txt',
  'équipe ünïcödé.txt',
  '日本語のファイル.gz',
  'emoji 🎉.bin',
  "it's (1) [2] {3} 100% #4 & 5=6, ok.txt",
  'x'.repeat(200),
];

describe('Content-Disposition of downloads', () => {
  it.each(names)('states %j exactly, and an ASCII fallback that cannot break the header', (name) => {
    const header = contentDisposition(name);
    expect(header).toMatch(/^attachment; filename="/);
    // One line of visible ASCII: nothing the header could be split or cut on.
    expect(header).toMatch(/^[\x20-\x7e]+$/);
    const { fallback, exact } = nameFrom(header);
    expect(exact).toBe(name);
    expect(fallback).toMatch(/^[\x20-\x7e]+$/);
    expect(fallback).not.toMatch(/["\\]/);
    if (/^[\x20-\x7e]+$/.test(name) && !/["\\]/.test(name)) expect(fallback).toBe(name);
    // The quoted fallback never ends early: the only quotes are its own two.
    expect(header.match(/"/g)).toHaveLength(2);
  });

  it.each(names)(
    `signs the header for %j into the download URL${honoursOverrides ? ', and S3 answers with it' : ` (S3 here is ${s3}, which ignores it: its answer is not checked)`}`,
    async (name) => {
      const key = `exports/dl-${randomUUID().slice(0, 8)}/out.bin`;
      await fileStore().putObject(key, 'hello');
      const url = await fileStore().presignGetObject(key, 60, name);
      // URLSearchParams decodes the query as S3 does; the parameter is covered by the signature.
      expect(new URL(url).searchParams.get('response-content-disposition')).toBe(contentDisposition(name));
      const response = await fetch(url);
      expect(response.status).toBe(200);
      expect(await response.text()).toBe('hello');
      if (honoursOverrides) {
        const header = response.headers.get('content-disposition')!;
        expect(header).toBe(contentDisposition(name));
        expect(nameFrom(header).exact).toBe(name);
      }
      await fileStore().deleteObject(key);
    },
  );
});
