import { join } from 'node:path';
import { FileJobsClient } from '../client/index.ts';
import { type ApiChoice, readConfig, resolveApiUrl, resolveToken, saveSession } from './config.ts';
import { UsageError } from './errors.ts';
import { Output } from './output.ts';

export interface GlobalOptions {
  api?: string;
  json?: boolean;
}

/** What every command needs: where the API is, how to print, a client. */
export class Context {
  readonly out: Output;
  readonly api: ApiChoice;
  readonly userAgent: string;

  constructor(globals: GlobalOptions, version: string) {
    this.out = new Output(globals.json === true);
    this.api = resolveApiUrl(globals.api);
    let url: URL | undefined;
    try {
      url = new URL(this.api.url);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw new UsageError(
        `the API URL "${this.api.url}" (from ${this.api.source}) is not a URL; it starts with http:// or https://`,
      );
    }
    this.userAgent = `file-jobs-cli/${version}`;
    // Found without being told (no --api, no FILE_JOBS_API_URL): say where, so that a wrong guess shows.
    if (this.api.source === 'the default')
      this.out.note(
        `note: using ${this.api.url}, the default (no --api, FILE_JOBS_API_URL or .local/stack.json in ${process.cwd()})`,
      );
    else if (this.api.source === '.local/stack.json')
      this.out.note(`note: using ${this.api.url}, from ${join(process.cwd(), '.local', 'stack.json')}`);
  }

  client(signedIn = true): FileJobsClient {
    const stored = signedIn && !process.env.FILE_JOBS_TOKEN ? readConfig().sessions[this.api.url] : undefined;
    return new FileJobsClient({
      apiUrl: this.api.url,
      token: signedIn ? resolveToken(this.api.url) : undefined,
      userAgent: this.userAgent,
      // A command that outlives its token (an upload of hours) renews it; the stored session keeps
      // the new one, so the next command starts with it.
      onTokenRenewed: (renewed) => {
        if (!stored) return;
        const expiresAt = new Date(Date.now() + renewed.expiresIn * 1000).toISOString();
        saveSession(this.api.url, { ...stored, token: renewed.token, expiresAt });
      },
    });
  }
}
