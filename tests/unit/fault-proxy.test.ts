import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server } from 'node:net';
import { startFaultProxy } from '../../scripts/fault-proxy.ts';

/**
 * The TCP fault proxy (scripts/fault-proxy.ts) in `pass` mode must be a wire: the chaos soak and the
 * fault tests lay every cut answer at the service's door. A target that closes its connection after
 * a large answer (moto does) once made the proxy reset the client's socket with part of the answer
 * still unsent, which the export worker met as "aborted" GETs that no fault had caused.
 */

const MiB = 1024 * 1024;
let target: Server;

afterEach(() => new Promise<void>((resolve) => target.close(() => resolve())));

async function serve(answer: Buffer): Promise<number> {
  target = createServer((socket) => {
    socket.once('data', () => socket.end(answer));
    socket.on('error', () => {});
  });
  target.listen(0, '127.0.0.1');
  await once(target, 'listening');
  return (target.address() as AddressInfo).port;
}

it('passes every byte of an answer the target closes after, to a client slower than the target', async () => {
  const answer = randomBytes(32 * MiB);
  const proxy = await startFaultProxy(`http://127.0.0.1:${await serve(answer)}`);
  try {
    const client = connect(proxy.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let error: Error | undefined;
    client.on('error', (cause) => {
      error = cause;
    });
    client.on('data', (chunk: Buffer) => chunks.push(chunk));
    client.write('GET / HTTP/1.0\r\n\r\n');
    // The client reads nothing for a while: the answer piles up between the proxy and the client.
    client.pause();
    await new Promise((resolve) => setTimeout(resolve, 300));
    client.resume();
    await once(client, 'close');
    expect(error).toBeUndefined();
    const received = Buffer.concat(chunks);
    expect(received.length).toBe(answer.length);
    expect(received.equals(answer)).toBe(true);
  } finally {
    await proxy.close();
  }
});

it("still resets the client when the target's connection breaks", async () => {
  target = createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial');
      setTimeout(() => socket.resetAndDestroy(), 50);
    });
  });
  target.listen(0, '127.0.0.1');
  await once(target, 'listening');
  const proxy = await startFaultProxy(`http://127.0.0.1:${(target.address() as AddressInfo).port}`);
  try {
    const client = connect(proxy.port, '127.0.0.1');
    let error: NodeJS.ErrnoException | undefined;
    client.on('error', (cause) => {
      error = cause;
    });
    const closed = new Promise((resolve) => client.on('close', resolve));
    client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    client.resume();
    // (events.once would reject with the very error looked for.)
    await closed;
    expect(error?.code).toBe('ECONNRESET');
  } finally {
    await proxy.close();
  }
});
