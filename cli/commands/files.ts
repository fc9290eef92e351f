import type { Context } from '../context.ts';
import { formatBytes, table } from '../format.ts';

export async function files(ctx: Context): Promise<void> {
  const client = ctx.client();
  const list = await client.listFiles();
  if (ctx.out.json) {
    ctx.out.event({ files: list });
    return;
  }
  if (ctx.out.tty) {
    ctx.out.line(
      list.length === 0
        ? 'no files'
        : table(
            ['NAME', 'SIZE', 'MODIFIED', 'CHECKSUM'],
            list.map((file) => [
              file.name,
              formatBytes(file.size),
              file.lastModified,
              checksumText(file.checksum),
            ]),
          ),
    );
    return;
  }
  for (const file of list)
    ctx.out.line([file.name, file.size, file.lastModified, checksumText(file.checksum)].join('\t'));
}

const checksumText = (checksum: { algorithm: string; value: string } | undefined) =>
  checksum ? `${checksum.algorithm}:${checksum.value}` : '-';
